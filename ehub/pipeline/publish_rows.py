"""The publish stage's reads and writes of the feed outbox (``feed_messages``).

A claim marks the next pending rows ``sending`` and returns them with their
records (:class:`Todo`); after the broker's acknowledgement the rows are marked
``published`` with their partition and offset, and a ``returned`` audit event
is appended per row in the same transaction. :func:`recover` settles rows a
dead publisher left ``sending``. Every function takes an optional set of
offices: a publish shard (:mod:`ehub.pipeline.publish_shards`) reads, marks and
recovers the rows of its own offices only.

On PostgreSQL a claim is one statement (pick, mark and read with the records:
primary-key joins) and the marks one ``UPDATE … FROM unnest(…)``, their arrays
passed as literals (:mod:`ehub.store.pg_arrays`); the documents are read as
text and decoded by msgspec (twice as fast as the JSON type's ``json.loads``).
SQLite runs the same steps as plain statements.

Must not publish: callers hold the publish lease (:mod:`ehub.pipeline.publish_lease`)
and talk to the broker.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from typing import Any, NamedTuple

import msgspec
from sqlalchemy import (
    BigInteger,
    Text,
    any_,
    bindparam,
    cast,
    func,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.schema import Table

from connectors.kafka_feed import Published, scan_ids
from ehub.audit import Event, append
from ehub.config import Settings
from ehub.offices import RecordKind
from ehub.store.bulk import bound
from ehub.store.db import Store, utcnow
from ehub.store.models import CaseRow, FeedMessageRow, LicenseRow, ReturnedRecord
from ehub.store.pg_arrays import int_array, text_array

log = logging.getLogger(__name__)

_decode = msgspec.json.Decoder(dict[str, Any]).decode
_ENCODE = msgspec.json.Encoder().encode
_FEED_TABLE: Table = FeedMessageRow.__table__  # type: ignore[assignment]  # a FromClause to mypy


class Todo(NamedTuple):
    """A claimed feed row with what its message is made of (a tuple: thousands a batch)."""

    id: int
    kind: RecordKind
    office: str
    topic: str
    message_key: str
    message_id: str
    identifier: str
    version: int
    status: str | None
    document: dict[str, Any]


def _ids_in(column: Any, ids: Sequence[int], dialect: str) -> Any:
    """``column`` among ``ids``: one array literal on PostgreSQL (no 2,000-parameter IN)."""
    if dialect == "postgresql":
        return column == any_(cast(literal(int_array(ids), Text), ARRAY(BigInteger)))
    return column.in_(list(ids))


# --- claiming ---------------------------------------------------------------------------


def _with_records(f: str, rows: str, as_text: str) -> str:
    """The select list and joins that read feed rows (alias ``f``, from ``rows``) with
    their record's identifier, version, status and document (``as_text``: the cast to
    text, if the store needs one)."""
    rec = ("l", "cr", "r")

    def pick(license_: str, case: str, returned: str) -> str:
        return (f"CASE WHEN {f}.license_id IS NOT NULL THEN {license_}\n"
                f"            WHEN {f}.case_id IS NOT NULL THEN {case} ELSE {returned} END")  # fmt: skip

    doc = [f"{a}.document{as_text}" for a in rec]
    return (
        f"SELECT {f}.id, {f}.kind, {f}.office, {f}.topic, {f}.message_key, {f}.message_id,\n"
        f"       {pick('l.identifier', 'cr.case_number', 'r.identifier')},\n"
        f"       {pick('l.version', 'cr.version', 'r.version')},\n"
        f"       {pick('l.status', 'NULL', 'r.status')},\n"
        f"       {pick(*doc)}\n"
        f"FROM {rows}\n"
        f"LEFT JOIN licenses AS l ON l.id = {f}.license_id\n"
        f"LEFT JOIN case_records AS cr ON cr.id = {f}.case_id\n"
        f"LEFT JOIN returned_records AS r ON r.id = {f}.returned_id\n"
    )


_PG_CLAIM = """
WITH picked AS (
    SELECT id FROM feed_messages WHERE state = 'pending'{office_filter}
    ORDER BY id LIMIT :limit
), claimed AS (
    UPDATE feed_messages AS f SET state = 'sending' FROM picked WHERE f.id = picked.id
    RETURNING f.id, f.kind, f.office, f.topic, f.message_key, f.message_id,
              f.license_id, f.case_id, f.returned_id
)
{with_records}ORDER BY c.id
""".replace("{with_records}", _with_records("c", "claimed AS c", "::text"))


def claim(s: Any, limit: int, dialect: str, offices: Collection[str] | None = None) -> list[Todo]:
    """Mark the next ``limit`` pending rows (of ``offices``, if given) ``sending``; them
    with their records, in id order (the order of commit: a record's versions stay
    ordered)."""
    if dialect == "postgresql":
        sql = _PG_CLAIM.format(
            office_filter="" if offices is None else " AND office = ANY(CAST(:offices AS text[]))"
        )
        params: dict[str, Any] = {"limit": limit}
        if offices is not None:
            params["offices"] = text_array(sorted(offices))
        # fetched at once: row by row costs ~5 µs a row
        return _todos(s.execute(text(sql), params).all())
    return _claim_sqlite(s, limit, offices)


_LITE_CLAIMED = (
    _with_records("f", "feed_messages AS f", "")
    + "WHERE f.id IN (SELECT value FROM json_each(?))\nORDER BY f.id\n"
)


def _claim_sqlite(s: Any, limit: int, offices: Collection[str] | None) -> list[Todo]:
    """:func:`claim` on SQLite: the same three steps as plain driver statements (the
    ids travel as one JSON array), records read by key with the rows."""
    conn = s.connection()
    where = ""
    params: tuple[Any, ...] = (limit,)
    if offices is not None:
        where = " AND office IN (SELECT value FROM json_each(?))"
        params = (_ENCODE(sorted(offices)).decode(), limit)
    ids = [r[0] for r in conn.exec_driver_sql(
        f"SELECT id FROM feed_messages WHERE state = 'pending'{where} ORDER BY id LIMIT ?",
        params)]  # fmt: skip
    if not ids:
        return []
    batch = (_ENCODE(ids).decode(),)
    conn.exec_driver_sql(
        "UPDATE feed_messages SET state = 'sending' WHERE id IN (SELECT value FROM json_each(?))",
        batch,
    )
    return _todos(conn.exec_driver_sql(_LITE_CLAIMED, batch).fetchall())


def _todos(rows: Sequence[Sequence[Any]]) -> list[Todo]:
    """Claimed rows read by :func:`_with_records`, their documents decoded."""
    return [
        Todo(rid, kind, office, topic, key, mid, ident, version, status, _decode(doc))
        for rid, kind, office, topic, key, mid, ident, version, status, doc in rows
    ]


def pending_by_office(store: Store) -> dict[str, int]:
    """Pending rows per office (rows without an office, of an older schema, left out)."""
    with store.session() as s:
        return {
            office: int(n)
            for office, n in s.execute(
                select(FeedMessageRow.office, func.count())
                .where(FeedMessageRow.state == "pending")
                .group_by(FeedMessageRow.office)
            )
            if office is not None
        }


# --- marking ----------------------------------------------------------------------------


def mark_published(s: Any, todo: Sequence[Todo], acks: dict[str, Published], dialect: str) -> None:
    """Mark ``todo`` published at the positions ``acks`` gives (by message id), with
    their ``returned`` audit events."""
    now = utcnow()
    if dialect == "postgresql":
        s.execute(
            text(
                "UPDATE feed_messages AS f SET state = 'published', partition = v.p, "
                '"offset" = v.o, published_at = :now '
                "FROM unnest(CAST(:ids AS bigint[]), CAST(:parts AS int[]), "
                "CAST(:offs AS bigint[])) AS v(id, p, o) WHERE f.id = v.id"
            ),
            {
                "now": now,
                "ids": int_array([t.id for t in todo]),
                "parts": int_array([acks[t.message_id].partition for t in todo]),
                "offs": int_array([acks[t.message_id].offset for t in todo]),
            },
        )
    elif dialect == "sqlite":  # one executemany of tuples, no per-row parameter building
        conn = s.connection()
        at = bound(_FEED_TABLE.c.published_at, now, conn.dialect)
        conn.exec_driver_sql(
            "UPDATE feed_messages SET state = 'published', partition = ?, \"offset\" = ?, "
            "published_at = ? WHERE id = ?",
            [(acks[t.message_id].partition, acks[t.message_id].offset, at, t.id) for t in todo],
        )
    else:
        table = _FEED_TABLE
        s.execute(
            update(table).where(table.c.id == bindparam("b_id"))
            .values(state="published", published_at=now),
            [{"b_id": t.id, "partition": acks[t.message_id].partition,
              "offset": acks[t.message_id].offset} for t in todo],
        )  # fmt: skip
    append(s, [Event("returned", t.identifier, t.version,
                     {"kind": t.kind, "office": t.office, "topic": t.topic})
               for t in todo])  # fmt: skip


def withhold(store: Store, rows: Sequence[Todo]) -> None:
    """Mark rows of a revoked office ``withheld``, with their audit events."""
    with store.session() as s:
        s.execute(
            update(FeedMessageRow)
            .where(_ids_in(FeedMessageRow.id, [t.id for t in rows], store.dialect))
            .values(state="withheld")
            .execution_options(synchronize_session=False)
        )
        append(s, [Event("return_withheld", t.identifier, t.version,
                         {"office": t.office, "reason": "office revoked"}) for t in rows])  # fmt: skip


# --- recovering -------------------------------------------------------------------------


def recover(settings: Settings, store: Store, offices: Collection[str] | None = None) -> int:
    """Resolve rows (of ``offices``, if given) left ``sending`` by a dead publisher; how
    many were already on the broker (marked published, with their ``returned`` audit
    events, as if their publisher had lived); the others are pending again. Call with
    the lease held (a live publisher's rows are ``sending`` too) and, for a shard,
    only for the shard's offices."""
    f, lic, case, ret = FeedMessageRow, LicenseRow, CaseRow, ReturnedRecord
    sending = (
        select(f.id, f.topic, f.message_id, f.kind, f.office,
               func.coalesce(lic.identifier, case.case_number, ret.identifier).label("ident"),
               func.coalesce(lic.version, case.version, ret.version).label("version"))
        .outerjoin(lic, lic.id == f.license_id)
        .outerjoin(case, case.id == f.case_id)
        .outerjoin(ret, ret.id == f.returned_id)
        .where(f.state == "sending")
        .order_by(f.id)
    )  # fmt: skip
    if offices is not None:
        sending = sending.where(f.office.in_(sorted(offices)))
    with store.session() as s:
        stuck = list(s.execute(sending))
    if not stuck:
        return 0
    found = scan_ids(settings.require("broker"), {r.topic for r in stuck},
                     tls=settings.broker_tls())  # fmt: skip
    now = utcnow()
    on_broker = [r for r in stuck if r.message_id in found]
    missing = [r.id for r in stuck if r.message_id not in found]
    with store.session() as s:
        if on_broker:
            table = _FEED_TABLE
            s.execute(
                update(table)
                .where(table.c.id == bindparam("b_id"))
                .values(state="published", published_at=now),
                [{"b_id": r.id, "partition": found[r.message_id].partition,
                  "offset": found[r.message_id].offset} for r in on_broker],
            )  # fmt: skip
            append(s, [Event("returned", r.ident, r.version,
                             {"kind": r.kind, "office": r.office, "topic": r.topic})
                       for r in on_broker])  # fmt: skip
        if missing:
            s.execute(
                update(FeedMessageRow)
                .where(_ids_in(FeedMessageRow.id, missing, store.dialect))
                .values(state="pending")
                .execution_options(synchronize_session=False)
            )
    log.warning("publish: recovered %d in-flight messages (%d already on the broker)",
                len(stuck), len(on_broker))  # fmt: skip
    return len(on_broker)
