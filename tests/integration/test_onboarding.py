"""Onboarding the five simulated department systems from their YAML specs alone.

- ``ehub source preview`` prints a readable table for every spec, writing nothing;
- the quarantine per reason code equals each simulator's injected defects exactly;
- killing an ingest run mid-batch, then re-running, gives the store an
  uninterrupted run gives, for each connector kind;
- a failing source (hostile file, expired token, unreachable system) fails
  alone, with a clear message, and keeps its watermark.

One dev stack with every simulated department (SQL, REST, GBK XML file drop,
Kafka events, case records). For each source, an uninterrupted run into one
hub store is the baseline; then, into fresh stores, ``ehub stage extract`` is
killed (``os._exit``) at three moments of its second or third batch — records
read but not stored; stored but the connector's own commit (file move, Kafka
offset commit) not done; everything done but the process gone — and the run
is repeated to completion. Each gets its own copy of the drop folder and its
own Kafka consumer group, so the runs cannot see each other's effects.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from ehub import devstack
from ehub.sources.connections import env_name
from ehub.sources.loader import find_spec
from ehub.store.db import Store
from ehub.store.models import CaseRow, LicenseRow, QuarantineRow, RawRecord, Watermark

pytestmark = pytest.mark.slow

COUNT = 120
BATCH = 25
SOURCES = (
    "market_regulation.business_licenses",  # sql
    "housing.construction_permits",  # rest
    "health.physician_certificates",  # files
    "transport.road_transport_permits",  # kafka
    "acceptance.case_records",  # sql, case records
)
FAULTS = ("extract:3:before", "extract:2:stored", "extract:2")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    home = tmp_path_factory.mktemp("ingest-kill") / "home"
    try:
        yield {"home": home, **devstack.up(home, seed_count=COUNT, defect_rate=0.1, seed=11)}
    finally:
        devstack.down(home)


def spec_path(source_id: str) -> Path:
    from ehub.sources.loader import spec_files

    return next(p for p in spec_files() if source_id.split(".")[1] in p.name)


def _env(stack: dict[str, Any], source_id: str, run: Path, fault: str = "") -> dict[str, str]:
    """Environment of one isolated run: own store, own drop-folder copy, own consumer group."""
    spec = find_spec(source_id)
    conn = dict(stack["connections"][spec.connection])
    extra = dict(conn.get("extra", {}))
    if spec.kind == "files":
        copy = run / "drop"
        if not copy.exists():
            shutil.copytree(extra["path"], copy)
        extra["path"] = str(copy)
    if spec.kind == "kafka":
        extra["group_id"] = f"ehub-test.{run.name}"  # tmp_path names are unique per run
    conn["extra"] = extra
    return {
        **os.environ,
        "EHUB_HOME": str(stack["home"]),
        "EHUB_DATABASE_URL": f"sqlite:///{run / 'hub.db'}",
        "EHUB_SOURCE_BATCH_SIZE": str(BATCH),
        "EHUB_BATCH_SIZE": str(BATCH),
        "EHUB_FAULT": fault,
        env_name(spec.connection): json.dumps(conn),
    }


def _stage(env: dict[str, str], stage: str, source_id: str) -> int:
    proc = subprocess.run(
        [sys.executable, "-m", "ehub", "stage", stage, "--source", source_id],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode not in (0, 137):
        raise AssertionError(
            f"{stage} {source_id} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-3000:]}"
        )
    return proc.returncode


def _contents(run: Path, source_id: str) -> dict[str, Any]:
    store = Store(f"sqlite:///{run / 'hub.db'}")
    try:
        with store.session() as s:
            raws = sorted(
                s.execute(
                    select(RawRecord.source_key, RawRecord.payload_hash, RawRecord.state).where(
                        RawRecord.source_id == source_id
                    )
                ).tuples()
            )
            licenses = sorted(
                s.execute(
                    select(LicenseRow.identifier, LicenseRow.version, LicenseRow.content_hash)
                ).tuples()
            )
            cases = sorted(
                s.execute(
                    select(CaseRow.case_number, CaseRow.version, CaseRow.content_hash)
                ).tuples()
            )
            quarantine = sorted(
                s.execute(
                    select(QuarantineRow.source_key, QuarantineRow.reason_code, QuarantineRow.field)
                ).tuples()
            )
            wm = s.get(Watermark, source_id)
            return {
                "raw": raws,
                "licenses": licenses,
                "cases": cases,
                "quarantine": quarantine,
                "watermark": json.loads(wm.cursor)
                if wm and wm.cursor.startswith("{")
                else (wm.cursor if wm else None),
            }
    finally:
        store.dispose()


def _left_in_drop(run: Path) -> list[str]:
    drop = run / "drop"
    return sorted(p.name for p in drop.glob("*.xml")) if drop.exists() else []


@pytest.fixture(scope="module")
def baselines(stack: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = {}
    for source_id in SOURCES:
        run = tmp_path_factory.mktemp("baseline")
        env = _env(stack, source_id, run)
        assert _stage(env, "extract", source_id) == 0
        assert _stage(env, "normalize", source_id) == 0
        out[source_id] = {"contents": _contents(run, source_id), "drop": _left_in_drop(run)}
        expected = stack["seeded"][source_id]["expected"]
        quarantined: dict[str, set[str]] = {}
        for key, reason, _field in out[source_id]["contents"]["quarantine"]:
            quarantined.setdefault(reason, set()).add(key)
        assert {k: len(v) for k, v in quarantined.items()} == expected, source_id
    return out


@pytest.mark.parametrize("source_id", SOURCES)
def test_quarantine_per_reason_equals_the_injected_defects(
    stack: dict[str, Any], baselines: dict[str, Any], source_id: str
) -> None:
    quarantined: dict[str, set[str]] = {}
    for key, reason, _field in baselines[source_id]["contents"]["quarantine"]:
        quarantined.setdefault(reason, set()).add(key)
    expected = stack["seeded"][source_id]["expected"]
    assert len(expected) >= 8  # every defect class of the department was injected
    assert {k: len(v) for k, v in quarantined.items()} == expected
    assert sum(expected.values()) == sum(len(v) for v in quarantined.values())


@pytest.mark.parametrize("source_id", SOURCES)
def test_preview_prints_a_readable_table_and_writes_nothing(
    stack: dict[str, Any], tmp_path: Path, source_id: str
) -> None:
    spec = find_spec(source_id)
    env = _env(stack, source_id, tmp_path)
    before = _left_in_drop(tmp_path)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ehub",
            "source",
            "preview",
            str(spec_path(source_id)),
            "--limit",
            "12",
        ],
        env={**env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert spec.department.name in out and "preview, nothing written" in out
    assert "source key" in out and "outcome" in out
    rows = [ln for ln in out.splitlines() if ln.startswith("│")]
    assert len(rows) >= 12, out
    assert "12 records read" in out
    assert not (tmp_path / "hub.db").exists()  # no store written
    assert _left_in_drop(tmp_path) == before  # no file moved


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("source_id", SOURCES)
def test_killed_extract_then_rerun_equals_an_uninterrupted_run(
    stack: dict[str, Any], baselines: dict[str, Any], tmp_path: Path, source_id: str, fault: str
) -> None:
    env = _env(stack, source_id, tmp_path)
    assert _stage({**env, "EHUB_FAULT": fault}, "extract", source_id) == 137, (
        "the fault did not fire"
    )
    partial = _contents(tmp_path, source_id)
    assert 0 < len(partial["raw"]) < COUNT
    assert _stage(env, "extract", source_id) == 0
    assert _stage(env, "normalize", source_id) == 0
    assert _contents(tmp_path, source_id) == baselines[source_id]["contents"]
    assert _left_in_drop(tmp_path) == baselines[source_id]["drop"] == []


# --- a failing source fails alone, with a clear message, and keeps its watermark ---------


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ehub", "stage", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_hostile_or_malformed_files_fail_the_source_and_keep_its_watermark(
    stack: dict[str, Any], tmp_path: Path
) -> None:
    from simulators.file_drop import write_hostile

    source_id = "health.physician_certificates"
    env = _env(stack, source_id, tmp_path)
    assert _stage(env, "extract", source_id) == 0
    before = _contents(tmp_path, source_id)
    hostile = write_hostile(tmp_path / "drop")
    names = sorted(p.name for p in (tmp_path / "drop").glob("*.xml"))
    assert names, hostile
    proc = _run(env, "extract", "--source", source_id)
    assert proc.returncode == 1
    message = proc.stdout + proc.stderr
    assert source_id in message and "WJW_" in message, message
    assert _contents(tmp_path, source_id) == before
    assert sorted(p.name for p in (tmp_path / "drop").glob("*.xml")) == names  # left in place


def test_an_expired_token_fails_the_rest_source_with_what_to_do(
    stack: dict[str, Any], tmp_path: Path
) -> None:
    import httpx

    source_id = "housing.construction_permits"
    env = _env(stack, source_id, tmp_path)
    url = stack["connections"]["ehub_src_housing"]["host"]
    httpx.post(
        f"{url}/admin/faults", json={"expire_tokens": True, "include_static": True}, timeout=10
    ).raise_for_status()
    try:
        proc = _run(env, "extract", "--source", source_id)
    finally:
        httpx.delete(f"{url}/admin/faults", timeout=10).raise_for_status()
    assert proc.returncode == 1
    message = proc.stdout + proc.stderr
    assert "ehub_src_housing" in message and source_id in message, message
    assert _contents(tmp_path, source_id)["watermark"] is None
    assert _stage(env, "extract", source_id) == 0  # works again once the token is renewed


def test_one_unreachable_source_does_not_stop_the_others(
    stack: dict[str, Any], tmp_path: Path
) -> None:
    env = _env(stack, "market_regulation.business_licenses", tmp_path)
    for sid in SOURCES[1:]:
        env.update(
            {k: v for k, v in _env(stack, sid, tmp_path).items() if k.startswith("AIRFLOW_CONN")}
        )
    dead = devstack.free_port()
    env[env_name("ehub_src_housing")] = json.dumps(
        {"conn_type": "http", "host": f"http://127.0.0.1:{dead}", "password": "x"}
    )
    proc = _run(env, "extract")  # every source
    assert proc.returncode == 1
    message = proc.stdout + proc.stderr
    assert "housing.construction_permits" in message and f"127.0.0.1:{dead}" in message, message
    store = Store(f"sqlite:///{tmp_path / 'hub.db'}")
    try:
        with store.session() as s:
            rows = s.execute(
                select(RawRecord.source_id, func.count()).group_by(RawRecord.source_id)
            ).all()
            counts = {sid: int(n) for sid, n in rows}
    finally:
        store.dispose()
    assert "housing.construction_permits" not in counts
    assert set(counts) == set(SOURCES) - {"housing.construction_permits"}
    assert all(n == COUNT for n in counts.values()), counts
