"""Array literals for the batch statements: PostgreSQL reads back exactly the values
given (quotes, backslashes, braces, the word NULL, blanks, any Unicode, SQL NULL),
and the one-join fast path writes what the element-by-element path writes. The audit
chain's batch encoding hashes as the one-event digest does."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from ehub.audit import GENESIS, Event, _chained, _digest
from ehub.store.pg_arrays import _quoted, int_array, text_array

ODD = ["", "NULL", "null", 'a"b', "c\\d", "\\", '"', "{x,y}", " sp ", "中文 ✓", "new\nline",
       "tab\t", "comma,", "'single'", "\u2028", "a" * 3000]  # fmt: skip


def test_text_literals_fast_and_slow_paths_agree() -> None:
    plain = ["ehub.return.office.370100-city", "1.2.156.3005", "中文", ""]
    assert text_array(plain) == "{" + ",".join(_quoted(v) for v in plain) + "}"
    assert text_array([]) == "{}" and int_array([]) == "{}"
    assert text_array(["x", None]) == '{"x",NULL}'
    assert int_array([1, None, -3, 2**62]) == "{1,NULL,-3,4611686018427387904}"
    assert int_array(iter([5, 6])) == "{5,6}"


def test_postgresql_reads_back_what_was_given(pg_url: str) -> None:
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            values = [*ODD, None, *ODD[:3]]
            got = conn.execute(text("SELECT CAST(:a AS text[])"), {"a": text_array(values)})
            assert got.scalar() == values
            got = conn.execute(text("SELECT CAST(:a AS text[])"), {"a": text_array(ODD[:1])})
            assert got.scalar() == [""]
            ints = [0, -1, 2**63 - 1, None, 42]
            got = conn.execute(text("SELECT CAST(:a AS bigint[])"), {"a": int_array(ints)})
            assert got.scalar() == ints
            with pytest.raises(Exception, match=r"(?i)nul|0x00|null character"):
                conn.execute(text("SELECT CAST(:a AS text[])"), {"a": text_array(["a\x00b", "c"])})
    finally:
        engine.dispose()


def test_batch_chain_hashes_as_the_single_event_digest() -> None:
    events = [
        Event("returned", 'S"x\\中\u2028\x01', 3, {"kind": "license", "office": "a", "topic": "t"}),
        Event("returned", "b", None, {"office": "a", "kind": "license", "topic": "t"}),
        Event("returned", "b", 1, {"kind": "license", "office": "a", "topic": "t"}),
        Event("x", "y", 2, {"n": 1, "f": True, "z": None}),
        Event("x", "y", 2, {"n": True, "f": 1, "z": None}),
        Event("x", "y", 2, {"nested": {"b": 1, "a": [1.5, 1e16]}}),
        Event("x", "y", 2, None),
        Event("x", "y", 2, {"f": -0.0}),
        Event("x", "y", 2, {1: "a"}),  # type: ignore[dict-item]
        Event("x", "y", 2, {True: "a"}),  # type: ignore[dict-item]
    ]
    at = "2026-01-01T00:00:00.123456+00:00"
    cols = _chained(events, GENESIS, at)
    prev = GENESIS
    for e, h, p in zip(events, cols["hash"], cols["prev"], strict=True):
        assert p == prev
        assert _digest(prev, e.event, e.subject, e.version, e.detail or {}, at) == h, e
        prev = h
    assert cols["det"][0] == '{"kind": "license", "office": "a", "topic": "t"}'


def test_a_bulk_append_verifies_and_reads_back(store_url: str) -> None:
    """More than 50 events take the bulk path (arrays on PostgreSQL, an executemany on
    SQLite): the chain verifies across bulk and small appends, and every row reads
    back as the event it was."""
    from sqlalchemy import select

    from ehub.audit import append, verify_chain
    from ehub.store.db import Store
    from ehub.store.models import AuditEvent

    store = Store(store_url)
    store.migrate()
    try:
        odd = [Event("returned", f"LIC-{i}-{ODD[i % len(ODD)][:40]}", i,
                     {"kind": "license", "office": f"o{i % 3}", "topic": ODD[i % len(ODD)][:50]})
               for i in range(120)]  # fmt: skip
        with store.session() as s:
            append(s, odd)  # one statement of arrays (more than 50 events)
        with store.session() as s:
            append(s, odd[:3])  # the small path, chained after it
        nested = [Event("x", "y", None, {"nested": {"a": [1, 2.5]}, "名": "张三"})] * 60
        with store.session() as s:
            append(s, nested)
        with store.session() as s:
            assert verify_chain(s) == []
            got = [(r.event, r.subject, r.version, r.detail)
                   for r in s.scalars(select(AuditEvent).order_by(AuditEvent.id))]  # fmt: skip
        assert got == [(e.event, e.subject, e.version, e.detail)
                       for e in [*odd, *odd[:3], *nested]]  # fmt: skip
    finally:
        store.dispose()
