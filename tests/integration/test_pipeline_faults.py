"""Fault injection across the whole pipeline, on a PostgreSQL of its own and the dev stack.

Every stage runs as its own process (``ehub stage``, as an Airflow task would) while
the harness breaks something under it, then lets it run again:

- extract and normalize killed at a batch (``EHUB_FAULT``, ``os._exit`` like SIGKILL);
- PostgreSQL restarted (``pg_ctl restart -m fast`` on a cluster of the test's own)
  while normalize and deliver run;
- the TSA unreachable while B-T licenses are sealed (the PKI service killed; the
  licenses are held with the reason), then back;
- the output folder's disk full while sealing (``enospc`` fault: every file write
  fails as ENOSPC), then space again;
- the platforms answering 5xx, 429, connection resets, lost receipts, partial batch
  failures and slow answers on every endpoint, and the delivery killed between send
  and receipt;
- the broker (tansu on durable storage: an S3-compatible object store of the stack's
  own) killed (SIGKILL) and started again: after the publisher died between the
  broker's ack and marking its rows, and under a running publisher; then frozen
  (SIGSTOP) under the publisher and thawed.

Afterwards every raw record is in exactly one final state, every license version is
sealed, each platform holds each record version exactly once, each office topic holds
each message once, nothing is left in an outbox, and the audit chain verifies. The
test prints ``faults injected N, records checked N, lost 0, duplicated 0``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, func, select, text

from connectors.tls import httpx_kwargs
from ehub import devbroker, devstack
from ehub.audit_verify import verify_audit
from ehub.config import Settings
from ehub.offices_dev import ensure_dev_offices
from ehub.store.db import Store
from ehub.store.models import DeliveryRow, FeedMessageRow, LicenseRow, RawRecord
from tests.conftest import need_binary
from tests.integration import journey_support as js

pytestmark = pytest.mark.slow

SOURCES = ("health.physician_certificates", "market_regulation.business_licenses")
MIX = {"faults": [{"kind": k, "rate": 0.08, **({"delay": 0.3} if k == "slow" else {})}
                  for k in ("http500", "http503", "http429", "reset", "lose_receipt",
                            "partial", "slow")], "seed": 9}  # fmt: skip


class PrivatePostgres:
    """A PostgreSQL cluster of the test's own (initdb + pg_ctl, as the ``postgres`` user
    when the tests run as root), so the harness can restart it under the hub."""

    def __init__(self) -> None:
        # Not under pytest's tmp_path: its folders are private to root (mode 0700).
        root = self.root = Path(tempfile.mkdtemp(prefix="ehub-pg-"))
        self.data, self.port = root / "pg", devstack.free_port()
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as:
            shutil.chown(root, "postgres")
        self._pg(need_binary("initdb", "postgresql"), "-D", str(self.data), "-A", "trust",
                 "-U", "postgres", "--no-sync")  # fmt: skip
        self._ctl("start", "-o", f"-p {self.port} -k {root} -c listen_addresses=127.0.0.1 "
                                 "-c fsync=off")  # fmt: skip
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _pg(self, *argv: str) -> None:
        # The server inherits no pipe of ours (pg_ctl -l): waiting for EOF would hang.
        subprocess.run([*self._as, *argv], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=120)  # fmt: skip

    def _ctl(self, action: str, *args: str) -> None:
        log = ["-l", str(self.root / "pg.log")] if action in ("start", "restart") else []
        self._pg(need_binary("pg_ctl", "postgresql"), action, "-D", str(self.data), "-w",
                 "-m", "fast", *log, *args)  # fmt: skip

    def restart(self) -> None:
        self._ctl("restart")

    def stop(self) -> None:
        try:
            self._ctl("stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Settings, PrivatePostgres]]:
    home = tmp_path / "home"
    pg = PrivatePostgres()
    try:
        devstack.up(home, seed_count=80, defect_rate=0.08, seed=13,
                    departments=("market_regulation", "health"), durable_broker=True)  # fmt: skip
        base = Settings.from_env(home=home, out_dir=home / "out", batch_size=10,
                                 source_batch_size=10)  # fmt: skip
        store = Store(pg.url)  # the hub store on PostgreSQL, with the dev offices
        try:
            store.migrate()
            ensure_dev_offices(store)
        finally:
            store.dispose()
        yield replace(base, database_url=pg.url), pg
    finally:
        devstack.down(home)
        pg.stop()


def _env(settings: Settings, fault: str = "", batch: int | None = None) -> dict[str, str]:
    env = js.stage_env(settings, fault)
    if batch is not None:
        env["EHUB_BATCH_SIZE"] = str(batch)
    return env


def _argv(stage: str, source: str | None) -> list[str]:
    return [sys.executable, "-m", "ehub", "stage", stage, *(["--source", source] if source else [])]


def _run(settings: Settings, stage: str, source: str | None = None, *, fault: str = "",
         batch: int | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    return subprocess.run(_argv(stage, source), env=_env(settings, fault, batch),
                          capture_output=True, text=True, timeout=900)  # fmt: skip


def _ok(settings: Settings, stage: str, source: str | None = None) -> None:
    proc = _run(settings, stage, source)
    assert proc.returncode == 0, f"{stage} {source or ''}: {proc.stderr[-3000:]}"


def _restart_database_during(
    settings: Settings, pg: PrivatePostgres, stage: str, source: str | None
) -> int:
    """Run the stage and restart PostgreSQL once the stage is working; its exit code."""
    proc = subprocess.Popen(_argv(stage, source), env=_env(settings, batch=3),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    busy = 0
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline and not busy:
        engine = create_engine(settings.database_url)
        try:
            with engine.connect() as conn:
                busy = len(conn.execute(text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid() AND state <> 'idle'")).all())  # fmt: skip
        finally:
            engine.dispose()
        time.sleep(0.05)
    assert busy, f"{stage} finished before the database could be restarted under it"
    pg.restart()
    proc.wait(timeout=600)
    return proc.returncode


def _service(home: Path, name: str) -> dict[str, Any]:
    state = json.loads((home / "dev" / "stack.json").read_text())
    return next(s for s in state["services"] if s["name"] == name)


def _restart_pki(home: Path) -> None:
    """Start the dev PKI's CRL + TSA service again on its port (fixed by the certificates)."""
    path = home / "dev" / "stack.json"
    state = json.loads(path.read_text())
    svc = next(s for s in state["services"] if s["name"] == "pki")
    pid = devstack._spawn("pki", [sys.executable, "-m", "ehub", "pki", "serve", "--port",
                                  str(svc["port"])], home / "dev" / "logs",
                          {"EHUB_HOME": str(home)})  # fmt: skip
    devstack._wait_tcp(int(svc["port"]), "PKI services", pid)
    svc["pid"] = pid
    path.write_text(json.dumps(state))


def _platform(settings: Settings, url: str, method: str, path: str, **kw: Any) -> Any:
    r = httpx.request(method, f"{url}{path}", timeout=30, **httpx_kwargs(settings.platform_tls()),
                      **kw)  # fmt: skip
    assert r.status_code < 300, r.text
    return r.json() if r.content else None


def _feeds(settings: Settings, *, published: bool) -> int:
    """Feed rows published (or not yet)."""
    store = Store(settings.database_url)
    try:
        with store.session() as s:
            state = FeedMessageRow.state
            where = state == "published" if published else state != "published"
            return int(s.scalar(select(func.count()).select_from(FeedMessageRow).where(where)) or 0)
    finally:
        store.dispose()


def _wait_published(settings: Settings, proc: subprocess.Popen[str], more_than: int) -> None:
    """Wait until the running publisher has marked more than ``more_than`` rows."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if _feeds(settings, published=True) > more_than:
            assert proc.poll() is None, "the publisher finished before the broker was killed"
            return
        assert proc.poll() is None, (
            f"the publisher ended early: {proc.stderr and proc.stderr.read()}"
        )
        time.sleep(0.05)
    raise AssertionError("the publisher marked nothing within 120 s")


def _wait_stopped(proc: subprocess.Popen[str]) -> None:
    """Wait until ``proc`` has stopped itself (a ``hold`` fault)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr and proc.stderr.read()[-2000:]
        with open(f"/proc/{proc.pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "T":
                return
        time.sleep(0.05)
    raise AssertionError("the publisher did not reach its hold point within 120 s")


def _held_versions(settings: Settings, url: str, kind: str) -> list[tuple[str, int]]:
    body = _platform(settings, url, "GET", f"/admin/{kind}")
    items = body[kind] if isinstance(body, dict) else body
    return [(i["identifier"], int(i["version"])) for i in items]


@pytest.mark.timeout(1800)  # sixteen faults, each stage run as its own process
def test_every_fault_then_recovery_leaves_each_record_exactly_once(
    stack: tuple[Settings, PrivatePostgres], capsys: pytest.CaptureFixture[str]
) -> None:
    settings, pg = stack
    home = settings.home
    faults: Counter[str] = Counter()

    # extract: killed at its second batch, then resumed from the watermark
    for source in SOURCES:
        assert _run(settings, "extract", source, fault="extract:2").returncode == 137
        faults["extract killed"] += 1
        _ok(settings, "extract", source)

    # normalize: PostgreSQL restarted under the stage
    _restart_database_during(settings, pg, "normalize", SOURCES[0])  # B-T licenses first
    faults["PostgreSQL restarted (normalize)"] += 1
    for source in SOURCES:
        assert _run(settings, "normalize", source, fault="normalize:1:before").returncode == 137
        faults["normalize killed"] += 1
        _ok(settings, "normalize", source)

    # seal: the TSA down for a first batch of B-T licenses (held), the disk full, a kill
    pki = _service(home, "pki")
    os.kill(pki["pid"], signal.SIGKILL)
    faults["TSA unreachable"] += 1
    held = _run(settings, "seal", fault="seal:1", batch=4)
    assert held.returncode == 137, held.stderr[-2000:]
    with Store(settings.database_url).session() as s:
        reasons = set(s.scalars(select(LicenseRow.state_reason).where(LicenseRow.state == "held")))
    assert reasons and all(r.startswith("service_unavailable") for r in reasons), reasons
    _restart_pki(home)
    full = _run(settings, "seal", fault="enospc:seal:7")
    assert full.returncode not in (0, 137) and "No space left" in full.stderr, full.stderr[-2000:]
    faults["disk full"] += 1
    assert not list((settings.out_dir / "licenses").glob("*.tmp")), "a partial file was left"
    assert _run(settings, "seal", fault="seal:2").returncode == 137
    faults["seal killed"] += 1
    _ok(settings, "seal")

    # deliver: both platforms failing in every way, a kill between send and receipt,
    # and the database sessions cut
    for url in (settings.provincial_url, settings.national_url):
        _platform(settings, url, "POST", "/admin/faults/mix", json=MIX)
    faults["platform fault mix (7 kinds at 8 %)"] += 2
    assert _run(settings, "deliver", fault="deliver:1:before").returncode == 137
    faults["deliver killed after send"] += 1
    _restart_database_during(settings, pg, "deliver_national", None)
    faults["PostgreSQL restarted (deliver)"] += 1
    for _ in range(6):  # the faults keep firing: runs until every row is delivered
        for stage in ("deliver", "deliver_national"):
            _run(settings, stage)
        with Store(settings.database_url).session() as s:
            if not s.scalar(select(func.count()).select_from(DeliveryRow)
                            .where(DeliveryRow.state != "delivered")):  # fmt: skip
                break
    for url in (settings.provincial_url, settings.national_url):
        _platform(settings, url, "DELETE", "/admin/faults")
    _ok(settings, "deliver")
    _ok(settings, "deliver_national")

    # publish: the publisher killed between the broker's ack and marking its rows, the
    # broker killed and started again (its storage kept); the broker frozen under the
    # publisher, then thawed; the broker killed under a running publisher
    assert _run(settings, "publish", fault="publish:2:acked", batch=5).returncode == 137
    faults["publish killed after ack"] += 1
    before = js.broker_messages(settings)
    assert before, "the killed publisher had nothing acknowledged"
    devbroker.restart_broker(home, down_s=2.0)
    faults["broker killed and restarted"] += 1
    assert js.broker_messages(settings) == before, "the broker lost messages in its restart"
    # frozen: the publisher stops itself after its second batch, the broker is frozen,
    # the publisher continued against it, the broker thawed 6 s later; the publisher
    # must carry on to its sixth batch (where it is killed, leaving rows for the next)
    proc = subprocess.Popen(_argv("publish", None),
                            env=_env(settings, fault="publish:2:hold,publish:6", batch=5),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    _wait_stopped(proc)
    broker = _service(home, "broker")
    os.kill(broker["pid"], signal.SIGSTOP)
    faults["broker frozen under the publisher"] += 1
    os.kill(proc.pid, signal.SIGCONT)
    time.sleep(6)
    os.kill(broker["pid"], signal.SIGCONT)
    assert proc.wait(timeout=600) == 137, proc.stderr and proc.stderr.read()[-2000:]
    assert _feeds(settings, published=False), "nothing left for the next fault"
    proc = subprocess.Popen(_argv("publish", None), env=_env(settings, batch=5),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    _wait_published(settings, proc, more_than=_feeds(settings, published=True))
    devbroker.restart_broker(home, down_s=3.0)
    faults["broker killed under the publisher and restarted"] += 1
    proc.wait(timeout=600)
    _ok(settings, "publish")

    # every stage once more: nothing left to do, nothing done twice
    for stage in js.STAGES:
        for source in SOURCES if stage in ("extract", "normalize") else (None,):
            _ok(settings, stage, source)

    store = Store(settings.database_url)
    try:
        with store.session() as s:
            raw = dict(s.execute(select(RawRecord.state, func.count())
                                 .group_by(RawRecord.state)).all())  # fmt: skip
            lic = dict(s.execute(select(LicenseRow.state, func.count())
                                 .group_by(LicenseRow.state)).all())  # fmt: skip
            outbox = dict(s.execute(select(DeliveryRow.state, func.count())
                                    .group_by(DeliveryRow.state)).all())  # fmt: skip
            feeds = dict(s.execute(select(FeedMessageRow.state, func.count())
                                   .group_by(FeedMessageRow.state)).all())  # fmt: skip
            versions = {(i, v) for i, v in s.execute(select(LicenseRow.identifier,
                                                            LicenseRow.version))}  # fmt: skip
        report = verify_audit(store, trust_roots=[home / "pki" / "root.pem"])
    finally:
        store.dispose()
    assert set(raw) <= {"normalized", "quarantined"} and raw.get("quarantined")
    assert set(lic) == {"sealed"}, lic  # nothing held, nothing half-sealed
    assert set(outbox) == {"delivered"}, outbox
    assert set(feeds) == {"published"}, feeds
    provincial = _held_versions(settings, settings.provincial_url, "licenses")
    catalog = _held_versions(settings, settings.national_url, "licenses")
    for held_list in (provincial, catalog):
        assert len(held_list) == len(set(held_list)), "a platform holds a version twice"
        assert set(held_list) == versions, "a platform lacks a version or holds an unknown one"
    messages = js.broker_messages(settings)
    assert sum(messages.values()) == len(messages) == feeds["published"]
    assert report.ok, report.problems[:5]
    lost = len(versions - set(provincial)) + len(versions - set(catalog))
    duplicated = (len(provincial) - len(set(provincial)) + len(catalog) - len(set(catalog))
                  + sum(messages.values()) - len(messages))  # fmt: skip
    with capsys.disabled():
        print(f"\npipeline faults: faults injected {sum(faults.values())} "
              f"({', '.join(f'{k} {n}' for k, n in faults.items())}), records checked "
              f"{sum(raw.values())}, lost {lost}, duplicated {duplicated}")  # fmt: skip
