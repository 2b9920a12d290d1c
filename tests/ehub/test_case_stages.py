"""The case pipeline's faster paths, on SQLite and PostgreSQL: case versions stored with
their outbox rows from the insert itself, the offices read once per normalize run,
deliveries overlapping the platform's work yet recorded only once acknowledged, a
failed batch counted after the one before it is recorded, specs parsed once per
process, and the raw payload hash unchanged."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from connectors.platform import PlatformUnavailable, Receipt
from ehub import tasks
from ehub.bench_delivery import add_cases
from ehub.config import Settings
from ehub.errors import DestinationUnavailable
from ehub.feeds import FeedRouter
from ehub.pipeline import deliver, normalize, outbox
from ehub.pipeline.extract import payload_hash
from ehub.sources.loader import default_sources_dir
from ehub.store.db import Store
from ehub.store.models import CaseRow, DeliveryRow, Source
from tests.ehub.test_pipeline_normalize import case, case_spec, ingest


@pytest.fixture
def env(tmp_path: Path, store_url: str) -> Iterator[tuple[Settings, Store]]:
    settings = Settings.from_env(home=tmp_path, database_url=store_url, batch_size=10)
    store = Store(store_url)
    store.migrate()
    try:
        yield settings, store
    finally:
        store.dispose()


# --- normalize ---------------------------------------------------------------------------


def test_offices_are_read_once_per_run(
    env: tuple[Settings, Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, store = env
    loads: list[str] = []
    real = FeedRouter.load.__func__  # type: ignore[attr-defined]
    monkeypatch.setattr(
        FeedRouter, "load", classmethod(lambda cls, st, p: (loads.append(p), real(cls, st, p))[1])
    )
    spec = case_spec()
    ingest(env, spec, [case(f"r{n}", f"BJ-{n}") for n in range(35)])
    result = normalize.run(settings, store, spec)
    assert result.batches == 4 and result.counts["new_versions"] == 35
    assert loads == [settings.return_topic_prefix]


def _version(n: int, state: str = "submitted") -> dict[str, Any]:
    return {"case_number": f"BJ-{n}", "version": 1, "division": "370102",
            "content_hash": hashlib.sha256(f"{n}{state}".encode()).hexdigest(),
            "document": {"BJBH": f"BJ-{n}", "BJZT": state, "二": [n, None]},
            "source_id": "src", "source_key": f"r{n}", "raw_id": None,
            "created_at": datetime.now(UTC)}  # fmt: skip


def test_case_versions_stored_with_their_outbox_rows(env: tuple[Settings, Store]) -> None:
    _, store = env
    with store.session() as s:
        s.add(Source(id="src", department="d", kind="sql", record_kind="case",
                     created_at=datetime.now(UTC)))  # fmt: skip
    first = [_version(n) for n in range(25)]
    with store.session() as s:
        stored = outbox.store_case_versions(s, first)
    assert [(n, v, d) for _, n, v, d in stored] == [
        (r["case_number"], 1, r["document"]) for r in first
    ]
    # A re-run: the versions already there come back from the store (their stored
    # document, not the one in hand), the new ones from the insert; no outbox row twice.
    again = [_version(n, "accepted") for n in range(20, 30)]
    with store.session() as s:
        stored_again = outbox.store_case_versions(s, again)
        ids = dict(s.execute(select(CaseRow.case_number, CaseRow.id)).tuples().all())
        keys = s.execute(select(DeliveryRow.case_id, DeliveryRow.destination)).all()
    by_number = {n: (cid, d) for cid, n, _, d in stored_again}
    assert sorted(by_number) == sorted(r["case_number"] for r in again)
    assert all(ids[n] == cid for n, (cid, _) in by_number.items())
    assert [by_number[f"BJ-{n}"][1]["BJZT"] for n in range(20, 30)] == ["submitted"] * 5 + [
        "accepted"
    ] * 5
    assert sorted(keys) == sorted((i, d) for i in ids.values() for d in ("provincial", "national"))


# --- deliver -----------------------------------------------------------------------------


class FakePlatform:
    """Acknowledges every item; checks that nothing of a batch is recorded before its
    answer; fails the ``fail``-th batch."""

    destination = "provincial"

    def __init__(self, store: Store, fail: int | None = None) -> None:
        self.store, self.fail = store, fail
        self.batches: list[list[str]] = []

    def send(self, endpoint: str, items: Sequence[dict[str, Any]]) -> list[Receipt]:
        keys = [i["idempotency_key"] for i in items]
        with self.store.session() as s:
            states = set(s.scalars(select(DeliveryRow.state)
                                   .where(DeliveryRow.idempotency_key.in_(keys))))  # fmt: skip
        assert states == {"pending"}, states
        self.batches.append(keys)
        if len(self.batches) == self.fail:
            raise PlatformUnavailable("provincial platform down")
        return [Receipt(k, True, f"R-{k[:8]}", None, None, False,
                        {"idempotency_key": k, "status": "accepted", "receipt_id": f"R-{k[:8]}",
                         "duplicate": False}) for k in keys]  # fmt: skip

    def close(self) -> None:
        pass


def _rows(store: Store) -> list[tuple[Any, ...]]:
    with store.session() as s:
        return [
            tuple(r)
            for r in s.execute(
                select(DeliveryRow.idempotency_key, DeliveryRow.state, DeliveryRow.attempts,
                       DeliveryRow.receipt_id, DeliveryRow.receipt, DeliveryRow.last_error)
                .where(DeliveryRow.destination == "provincial")
                .order_by(DeliveryRow.id)
            )
        ]  # fmt: skip


def test_a_failed_batch_is_counted_after_the_one_before_it_is_recorded(
    env: tuple[Settings, Store],
) -> None:
    settings, store = env
    add_cases(store, 45)
    platform = FakePlatform(store, fail=3)
    with pytest.raises(DestinationUnavailable):
        deliver.run(settings, store, client=platform, kinds=["case"], attempts=1)
    rows = _rows(store)
    keys = [r[0] for r in rows]
    assert platform.batches == [keys[0:10], keys[10:20], keys[20:30]]  # in order, one by one
    for key, state, attempts, receipt_id, receipt, error in rows[:20]:
        assert error is None
        assert (state, attempts, receipt_id) == ("delivered", 1, f"R-{key[:8]}")
        assert receipt == {"idempotency_key": key, "status": "accepted",
                           "receipt_id": receipt_id, "duplicate": False}  # fmt: skip
    assert {(r[1], r[2]) for r in rows[20:30]} == {("pending", 1)}
    assert all("provincial platform down" in r[5] for r in rows[20:30])
    assert {(r[1], r[2]) for r in rows[30:]} == {("pending", 0)}  # built, never sent

    again = FakePlatform(store)
    result = deliver.run(settings, store, client=again, kinds=["case"])
    assert result.counts["delivered"] == 25 and result.batches == 3
    assert [k for b in again.batches for k in b] == keys[20:]  # the same keys
    assert [(r[1], r[2]) for r in _rows(store)] == [("delivered", 1)] * 20 + [
        ("delivered", 2)
    ] * 10 + [("delivered", 1)] * 15


def test_transient_receipts_count_attempts_until_a_dead_letter(
    env: tuple[Settings, Store],
) -> None:
    settings, store = env
    add_cases(store, 12)
    busy = {r[0] for r in _rows(store)[::2]}  # the platform asks to re-send these

    class Busy(FakePlatform):
        def send(self, endpoint: str, items: Sequence[dict[str, Any]]) -> list[Receipt]:
            done = super().send(endpoint, items)
            return [r if r.idempotency_key not in busy else Receipt(
                        r.idempotency_key, False, None, "TEMPORARY", "busy", False, {},
                        transient=True)
                    for r in done]  # fmt: skip

    for _ in range(2):
        deliver.run(settings, store, client=Busy(store), kinds=["case"], dead_after=2)
    rows = _rows(store)
    assert [(r[1], r[2]) for r in rows] == [("dead", 2), ("delivered", 1)] * 6
    assert all(r[5] == "TEMPORARY: busy" for r in rows[::2])


# --- extract and tasks -------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        {"ID": 1, "名": "二", "x": None, "b": True, "n": [1, {"z": "", "a": '\n\t"\\'}]},
        {"f": 1e16, "g": 0.1, "nan": float("nan")},  # floats: json.dumps itself
        {"k": 2**80, "e": "😀\u2028\x7f", "_lookups": {"SXMC": "药品"}},
    ],
)
def test_payload_hash_is_the_json_dumps_hash(payload: dict[str, Any]) -> None:
    body = json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    assert payload_hash(payload) == hashlib.sha256(body.encode()).hexdigest()


def test_specs_are_parsed_once_while_their_files_stay_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "sources"
    shutil.copytree(default_sources_dir() / "acceptance", folder / "acceptance")
    monkeypatch.setenv("EHUB_SOURCES_DIR", str(folder))
    parsed: list[str] = []
    real = tasks.find_spec
    monkeypatch.setattr(tasks, "find_spec", lambda sid: (parsed.append(sid), real(sid))[1])
    first = tasks._spec("acceptance.case_records")
    assert tasks._spec("acceptance.case_records") is first and len(parsed) == 1
    path = next(folder.rglob("*.yaml"))
    path.write_text(path.read_text("utf-8").replace("batch_size: 500", "batch_size: 250"))
    assert tasks._spec("acceptance.case_records").batch_size == 250 and len(parsed) == 2


def test_stages_collect_young_garbage_in_larger_steps_then_restore(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gc

    from ehub.pipeline import StageResult

    seen: list[tuple[int, int, int]] = []

    def stage(settings: Settings, store: Store) -> StageResult:
        seen.append(gc.get_threshold())
        return StageResult("probe")

    monkeypatch.setitem(tasks.STAGES, "probe", stage)
    settings = Settings.from_env(home=tmp_path, database_url=f"sqlite:///{tmp_path / 'h.db'}")
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        tasks.run_stage("probe", settings)
        assert seen[-1] == (tasks.STAGE_GC_THRESHOLD, 10, 10)
        assert gc.get_threshold() == (700, 10, 10)
        gc.set_threshold(0, 10, 10)  # collection switched off by the process: left so
        tasks.run_stage("probe", settings)
        assert seen[-1] == (0, 10, 10) and gc.get_threshold() == (0, 10, 10)
    finally:
        gc.set_threshold(*before)
