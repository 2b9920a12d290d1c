"""Bulk inserts of the hub store (``ehub.store.bulk``) on SQLite and PostgreSQL: the same
rows, values and stored JSON text as SQLAlchemy's generic insert, in row order, a
conflicting row left alone, only new rows returned; and the migration short cut."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Text, cast, select

from ehub.store import bulk
from ehub.store.db import Store, insert_ignore, insert_ignore_returning, json_text, loads_json
from ehub.store.models import DeliveryRow, RawRecord, Source

PAYLOADS: list[Any] = [
    {"a": 1, "b": "二", "c": None, "d": [1, "x", {"e": True}], "f": ""},
    {"quote": 'say "hi"\\ \n\t', "emoji": "😀", "big": 2**70, "neg": -3, "float": 1.5},
    {},
    {"k": "(){}[],;' ", "nested": {"deep": {"deeper": [None, False]}}},
]


@pytest.fixture
def store(store_url: str) -> Any:
    st = Store(store_url)
    st.migrate()
    with st.session() as s:
        s.add(Source(id="src", department="d", kind="sql", record_kind="case",
                     created_at=datetime.now(UTC)))  # fmt: skip
    yield st
    st.dispose()


def _raw(n: int, prefix: str = "k") -> dict[str, Any]:
    return {
        "source_id": "src",
        "source_key": f"{prefix}{n:04d}",
        "source_version": f"v{n}",
        "payload": PAYLOADS[n % len(PAYLOADS)],
        "payload_hash": f"{n:064d}",
        "state": "pending",
        "extracted_at": datetime(2026, 1, 2, 3, 4, 5, n, tzinfo=timezone(timedelta(hours=8))),
    }


def _stored(store: Store, prefix: str) -> list[tuple[Any, ...]]:
    with store.session() as s:
        return [
            tuple(r)
            for r in s.execute(
                select(RawRecord.source_key, RawRecord.source_version, RawRecord.payload,
                       cast(RawRecord.payload, Text).label("text"), RawRecord.extracted_at,
                       RawRecord.state)
                .where(RawRecord.source_key.startswith(prefix))
                .order_by(RawRecord.id)
            )
        ]  # fmt: skip


def test_bulk_rows_equal_the_generic_insert(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [_raw(n, "bulk") for n in range(40)]
    assert len(rows) >= bulk.BULK_MIN_ROWS
    with store.session() as s:
        insert_ignore(s, RawRecord.__table__, rows, ["source_id", "source_key", "payload_hash"])
    monkeypatch.setattr(bulk, "BULK_MIN_ROWS", 10**9)  # the generic SQLAlchemy insert
    with store.session() as s:
        insert_ignore(s, RawRecord.__table__, [_raw(n, "generic") for n in range(40)],
                      ["source_id", "source_key", "payload_hash"])  # fmt: skip
    fast, generic = _stored(store, "bulk"), _stored(store, "generic")
    assert [r[0] for r in fast] == [r["source_key"] for r in rows]  # ids in row order
    assert [r[1:] for r in fast] == [r[1:] for r in generic]  # values, JSON text, times
    assert [r[2] for r in fast] == [r["payload"] for r in rows]
    assert [r[3] for r in fast] == [json.dumps(r["payload"]) for r in rows]


def test_conflicting_rows_are_left_and_only_new_ones_returned(store: Store) -> None:
    keys = ["source_id", "source_key", "payload_hash"]
    first = [_raw(n) for n in range(30)]
    with store.session() as s:
        got = insert_ignore_returning(s, RawRecord.__table__, first, keys,
                                      (RawRecord.id, RawRecord.source_key))  # fmt: skip
    assert [k for _, k in got] == [r["source_key"] for r in first]
    changed = [{**r, "state": "other"} for r in first] + [_raw(n) for n in range(30, 35)]
    with store.session() as s:
        again = insert_ignore_returning(s, RawRecord.__table__, changed, keys,
                                        (RawRecord.id, RawRecord.source_key))  # fmt: skip
        insert_ignore(s, RawRecord.__table__, changed, keys)
        ids = dict(s.execute(select(RawRecord.source_key, RawRecord.id)).tuples().all())
        states = set(s.scalars(select(RawRecord.state)))
    assert [k for _, k in again] == [f"k{n:04d}" for n in range(30, 35)]
    assert all(ids[k] == i for i, k in got + again)
    assert states == {"pending"}  # the rows already there were not touched


def test_a_missing_python_default_or_a_json_null_takes_the_generic_path(store: Store) -> None:
    rows = [
        {
            "kind": "seal",
            "seal_id": None,
            "subject": f"s{n}",
            "version": 1,
            "destination": "x",
            "idempotency_key": f"key{n}",
            "state": "pending",
            "created_at": datetime.now(UTC),
            "receipt": None,
        }
        for n in range(30)
    ]  # fmt: skip  (no "attempts": its Python-side default 0 applies)
    with store.session() as s:
        insert_ignore(s, DeliveryRow.__table__, rows, ["idempotency_key"])
        got = s.execute(select(DeliveryRow.attempts, json_text(DeliveryRow.receipt))).all()
    assert {tuple(r) for r in got} == {(0, "null")}  # JSON null, as the JSON type stores None


def test_loads_json_is_json_loads() -> None:
    for text in ('{"a": [1, 2.5, "二", null, true]}', "NaN", '{"x": 1e400}', '"\\ud800"'):
        a, b = loads_json(text), json.loads(text)
        assert repr(a) == repr(b)
    assert loads_json(None) is None


def test_migrate_runs_alembic_only_when_the_store_is_not_at_head(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from alembic import command

    calls: list[str] = []
    real = command.upgrade
    monkeypatch.setattr(command, "upgrade", lambda cfg, rev: (calls.append(rev), real(cfg, rev)))
    st = Store(f"sqlite:///{tmp_path / 'hub.db'}")
    st.migrate("0007")  # an older store
    st.migrate()  # brought to head by Alembic
    st.migrate()  # at head: one query
    Store(st.url).migrate()
    assert calls == ["0007", "head"]
    with st.session() as s:
        assert s.scalar(select(DeliveryRow.id).limit(1)) is None  # the schema is there
    st.dispose()


@pytest.mark.parametrize("count", [3, 60])  # the generic path, the bulk path
def test_a_partial_unique_index_is_the_conflict_target(store: Store, count: int) -> None:
    """Feed outbox rows are unique per record version and topic through a partial index
    per record kind: a row already there is left alone, the other kind's rows with the
    same topic go in (its column is NULL there, outside the index)."""
    from ehub.store.models import CaseRow, FeedMessageRow, LicenseRow

    now = datetime.now(UTC)
    with store.session() as s:
        s.add(LicenseRow(id=1, identifier="L1", version=1, type_code="t", issuer_code="i",
                         holder_division="370602", county="370602", status="valid",
                         content_hash="0" * 64, document={}, source_id="src", source_key="k",
                         state="sealed", created_at=now))  # fmt: skip
        s.add(CaseRow(id=1, case_number="C1", version=1, division="370602",
                      content_hash="0" * 64, document={}, source_id="src", source_key="k",
                      created_at=now))  # fmt: skip

    def rows(kind: str, tag: str) -> list[dict[str, Any]]:
        return [{"kind": kind, f"{kind}_id": 1, "office": "o", "topic": f"t{n}",
                 "message_key": "k", "message_id": f"{kind}-{tag}-{n}", "state": "pending",
                 "created_at": now} for n in range(count)]  # fmt: skip

    for kind in ("license", "case"):
        with store.session() as s:
            insert_ignore(s, FeedMessageRow.__table__, rows(kind, "first"), [f"{kind}_id", "topic"],
                          where=f"{kind}_id IS NOT NULL")  # fmt: skip
        with store.session() as s:  # a re-run: every row is there already
            insert_ignore(s, FeedMessageRow.__table__, rows(kind, "again"), [f"{kind}_id", "topic"],
                          where=f"{kind}_id IS NOT NULL")  # fmt: skip
    with store.session() as s:
        got = sorted(s.scalars(select(FeedMessageRow.message_id)))
    assert got == sorted(f"{k}-first-{n}" for k in ("license", "case") for n in range(count))
