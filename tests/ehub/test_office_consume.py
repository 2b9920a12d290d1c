"""``ehub office consume`` on the real embedded broker: an office's data team reads its
return feed into files, killed with SIGKILL at random points while the hub is still
publishing, and ends with every published message exactly once, in order per record;
a torn last line is repaired from the broker; bad envelopes go to the rejects file."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from connectors.kafka_feed import FeedMessage, FeedPublisher
from ehub.cli import main
from ehub.feeds import FeedSigner, envelope, message_id
from ehub.office_consume_files import resume_points
from ehub.office_consumer import consumer_lag, group_for
from ehub.offices import add_office
from ehub.store.db import Store

ROOT = Path(__file__).resolve().parents[2]
OFFICE = "370602-zfq"
DIVISION = "370602"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, FeedSigner, Path]]:
    """The hub's home (dev PKI), its feed signer, and its feed certificate exported the
    way an office gets it (`ehub office feed-cert`)."""
    home = tmp_path_factory.mktemp("hub")
    signer = FeedSigner.dev(home)
    pem = home / "hub-feed.pem"
    out = CliRunner().invoke(main, ["office", "feed-cert", "--out", str(pem)],
                             env={"EHUB_HOME": str(home)})  # fmt: skip
    assert out.exit_code == 0, out.output
    assert x509.load_pem_x509_certificate(pem.read_bytes()) == signer.cert
    yield home, signer, pem


def _message(topic: str, office: str, key: str, version: int, signer: FeedSigner) -> FeedMessage:
    mid = message_id(topic, key, version)
    body = envelope(kind="license", identifier=key, version=version, status="valid",
                    division=DIVISION, office=office, payload={"ZZBS": key, "seq": version},
                    message_id=mid, signer=signer)  # fmt: skip
    return FeedMessage(topic, key, mid, body)


def _published_set(count: int, keys: int, topic: str, signer: FeedSigner) -> list[FeedMessage]:
    """``count`` versions over ``keys`` records, versions of a record in increasing order."""
    names = [f"1.2.156.3005.2.TEST.{uuid.uuid4().hex[:10].upper()}" for _ in range(keys)]
    seen: dict[str, int] = {}
    out = []
    for n in range(count):
        key = names[n % keys]
        seen[key] = seen.get(key, 0) + 1
        out.append(_message(topic, OFFICE, key, seen[key], signer))
    return out


def _cli(broker: str, prefix: str, out: Path, pem: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ehub", "office", "consume", "--office", OFFICE,
            "--out", str(out), "--broker", broker, "--hub-cert", str(pem),
            "--topic-prefix", prefix, *extra]  # fmt: skip


def _lines(out: Path) -> list[dict[str, Any]]:
    rows = []
    for path in sorted(out.glob("partition-*.jsonl")):
        data = path.read_bytes()
        assert data == b"" or data.endswith(b"\n"), f"{path.name} ends with a torn line"
        rows += [json.loads(line) for line in data.splitlines()]
    return rows


def _written(out: Path) -> int:
    return sum(p.stat().st_size for p in out.glob("partition-*.jsonl"))


def test_killed_consumer_resumes_without_loss_or_duplicate(
    tmp_path: Path, broker: str, hub: tuple[Path, FeedSigner, Path]
) -> None:
    _home, signer, pem = hub
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    prefix = f"test.consume.{uuid.uuid4().hex[:8]}."
    topic = prefix + OFFICE
    # at least 3000 messages, and more until the kills are over (a loaded machine
    # starts the consumer slowly: publishing must still be going on when it is killed)
    pool = _published_set(12000, 60, topic, signer)
    messages: list[FeedMessage] = []
    out = tmp_path / "office-out"
    env = {**os.environ, "EHUB_HOME": str(tmp_path / "office-home")}

    done = threading.Event()
    kills_over = threading.Event()
    errors: list[BaseException] = []

    def publish() -> None:
        publisher = FeedPublisher(broker)
        try:
            for i in range(0, len(pool), 75):
                if i >= 3000 and kills_over.is_set():
                    break
                publisher.publish(pool[i : i + 75])
                messages.extend(pool[i : i + 75])
                time.sleep(0.4)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            publisher.close()
            done.set()

    feeder = threading.Thread(target=publish, daemon=True)
    feeder.start()
    # first a crash exactly between fsync and commit: the files get ahead of the group
    crashed = subprocess.run(_cli(broker, prefix, out, pem, "--idle-exit", "20"), cwd=ROOT,
                             env={**env, "EHUB_FAULT": "consume:2:before"},
                             capture_output=True, text=True, timeout=120)  # fmt: skip
    assert crashed.returncode == 137, crashed.stderr
    in_files, _ = resume_points(out)
    group = dict(consumer_lag(broker, {OFFICE: topic}))[OFFICE]
    assert group is not None
    assert any(group.committed.get(p) != n for p, n in in_files.items()), "no crash window"
    # then SIGKILL at random points
    kills_while_publishing = 0
    for _round in range(3):
        before = _written(out) if out.exists() else 0
        proc = subprocess.Popen(_cli(broker, prefix, out, pem), cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
        deadline = time.monotonic() + 60
        while (not out.exists() or _written(out) <= before) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            time.sleep(0.05)
        assert _written(out) > before, f"seed {seed}: the consumer wrote nothing in 60 s"
        time.sleep(rng.uniform(0.0, 1.5))
        kills_while_publishing += not done.is_set()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    kills_over.set()
    feeder.join(timeout=120)
    assert not errors, errors
    assert kills_while_publishing >= 1, f"seed {seed}: every kill came after publishing ended"

    last = subprocess.run(_cli(broker, prefix, out, pem, "--idle-exit", "4"), cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert last.returncode == 0, last.stderr

    rows = _lines(out)
    positions = [(r["partition"], r["offset"]) for r in rows]
    assert len(positions) == len(set(positions)), f"seed {seed}: a line was written twice"
    got = [r["envelope"]["message_id"] for r in rows]
    assert len(got) == len(set(got)), f"seed {seed}: a message was written twice"
    assert set(got) == {m.message_id for m in messages}, f"seed {seed}: lost messages"
    assert not (out / "rejects.jsonl").exists()
    # order per record: each record's versions appear in increasing order, in one file
    for path in out.glob("partition-*.jsonl"):
        offsets: list[int] = []
        versions: dict[str, int] = {}
        for line in path.read_text("utf-8").splitlines():
            row = json.loads(line)
            offsets.append(row["offset"])
            env_ = row["envelope"]
            assert row["key"] == env_["identifier"] and env_["office"] == OFFICE
            assert versions.get(env_["identifier"], 0) == env_["version"] - 1, (
                f"seed {seed}: {path.name} offset {row['offset']} out of order"
            )
            versions[env_["identifier"]] = env_["version"]
        assert offsets == sorted(offsets)
    # offsets were committed after the files: the group has no lag left
    lags = dict(consumer_lag(broker, {OFFICE: topic}))
    lag = lags[OFFICE]
    assert lag is not None and lag.group == group_for(OFFICE)
    assert lag.total == 0 and sum(lag.end.values()) == len(messages)
    # and `ehub office status` shows it for the registered office
    store_url = f"sqlite:///{tmp_path / 'hub.db'}"
    store = Store(store_url)
    store.migrate()
    try:
        add_office(store, OFFICE, "芝罘区数据局", DIVISION, kinds=("license",),
                   fields={"license": ["ZZBS"]}, delivery=("kafka",))  # fmt: skip
    finally:
        store.dispose()
    status = CliRunner().invoke(
        main,
        ["office", "status", "--broker", broker, "--topic-prefix", prefix],
        env={"EHUB_DATABASE_URL": store_url, "EHUB_HOME": str(tmp_path / "office-home")},
    )
    assert status.exit_code == 0, status.output
    row = next(line for line in status.output.splitlines() if OFFICE in line)
    assert row.rstrip(" │|").split()[-1] == "0", status.output
    assert "consumer lag:" not in status.output


def test_torn_line_repaired_and_bad_envelopes_rejected(
    tmp_path: Path, broker: str, hub: tuple[Path, FeedSigner, Path]
) -> None:
    _home, signer, pem = hub
    prefix = f"test.consume.{uuid.uuid4().hex[:8]}."
    topic = prefix + OFFICE
    good = _published_set(120, 12, topic, signer)
    # forged: a valid envelope with its payload changed after signing
    forged_body = json.loads(good[0].value)
    forged_body["payload"]["injected"] = 1
    # signed by a key that is not the hub's
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not the hub")])
    now = time.time()
    import datetime as dt

    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(dt.datetime.fromtimestamp(now - 60, dt.UTC))
            .not_valid_after(dt.datetime.fromtimestamp(now + 3600, dt.UTC))
            .sign(key, hashes.SHA256()))  # fmt: skip
    stranger = FeedSigner(key, cert)
    bad = [
        FeedMessage(topic, "forged", "m-forged", json.dumps(forged_body).encode()),
        FeedMessage(topic, "junk", "m-junk", b"{not json"),
        _message(topic, OFFICE, "1.2.156.3005.2.TEST.STRANGER", 1, stranger),
        _message(topic, "370602001-town", "1.2.156.3005.2.TEST.OTHER", 1, signer),
    ]
    reasons = {"forged": "signature does not verify", "junk": "not JSON",
               "1.2.156.3005.2.TEST.STRANGER": "unknown certificate",
               "1.2.156.3005.2.TEST.OTHER": "addressed to office"}  # fmt: skip
    publisher = FeedPublisher(broker)
    try:
        acks = publisher.publish(good[:60] + bad + good[60:])
    finally:
        publisher.close()
    where = {a.message_id: (a.partition, a.offset) for a in acks}
    out = tmp_path / "out"
    env = {"EHUB_HOME": str(tmp_path / "office-home")}
    args = ["office", "consume", "--office", OFFICE, "--out", str(out), "--broker", broker,
            "--hub-cert", str(pem), "--topic-prefix", prefix]  # fmt: skip

    # a first run stops after 50 messages; the second goes on from there
    first = CliRunner().invoke(main, [*args, "--max-messages", "50"], env=env)
    assert first.exit_code == 0, first.output
    assert len(_lines(out)) + _count(out / "rejects.jsonl") == 50
    second = CliRunner().invoke(main, [*args, "--idle-exit", "2"], env=env)
    assert second.exit_code == 0, second.output
    rows = _lines(out)
    assert sorted(r["envelope"]["message_id"] for r in rows) == sorted(m.message_id for m in good)
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text("utf-8").splitlines()]
    assert len(rejects) == len(bad)
    for r, m in zip(sorted(rejects, key=lambda r: r["key"]), sorted(bad, key=lambda m: m.key),
                    strict=True):  # fmt: skip
        assert r["topic"] == topic and (r["partition"], r["offset"]) == where[m.message_id]
        assert reasons[m.key] in r["reason"], r

    # a kill in the middle of a write: the last line of a file is torn
    path = max(out.glob("partition-*.jsonl"), key=lambda p: p.stat().st_size)
    whole = path.read_bytes()
    last_line = whole[whole.rstrip(b"\n").rfind(b"\n") + 1 :]
    path.write_bytes(whole[: len(whole) - len(last_line) // 2])
    third = CliRunner().invoke(main, [*args, "--idle-exit", "2"], env=env)
    assert third.exit_code == 0, third.output
    assert f"repaired torn last lines: {path.name}" in third.output
    # the group had committed past that message; the files win and it is read again
    assert path.read_bytes() == whole
    assert len(_lines(out)) == len(good)
    assert _count(out / "rejects.jsonl") == len(bad)


def _count(path: Path) -> int:
    return len(path.read_bytes().splitlines()) if path.exists() else 0


def test_repair_tail_cuts_only_a_tear(tmp_path: Path) -> None:
    from ehub.errors import ConfigError
    from ehub.office_consume_files import repair_tail

    def line(p: int, o: int) -> bytes:
        return json.dumps({"partition": p, "offset": o, "envelope": {"x": "证照"}},
                          ensure_ascii=False).encode() + b"\n"  # fmt: skip

    good = line(0, 7) + line(0, 8)
    path = tmp_path / "partition-0.jsonl"
    for tail, cut in ((b"", 0), (line(0, 9)[:20], 20), (b"\0" * 40 + b"\n", 41),
                      (b"\0" * 10 + b"\n" + b'{"partition": 0, "off', 32)):  # fmt: skip
        path.write_bytes(good + tail)
        assert repair_tail(path) == ((0, 8), cut)
        assert path.read_bytes() == good
    path.write_bytes(good + b"not a record\n" + b"nor this\n")
    with pytest.raises(ConfigError, match="not records"):
        repair_tail(path)
    assert path.read_bytes().startswith(good)  # nothing cut
    path.write_bytes(good + line(0, 9)[:5])
    (tmp_path / "rejects.jsonl").write_bytes(line(0, 11) + line(1, 3))
    assert resume_points(tmp_path) == ({0: 12, 1: 4}, ["partition-0.jsonl"])
