"""Publish stage: pending return-feed outbox rows → the broker.

Exactly-once per record version and topic: a batch is first marked
``sending`` (committed), then published and acknowledged, then marked
``published`` with its partition and offset. If the process dies in between,
the next publisher finds ``sending`` rows, scans their topics for the message
ids already there, marks those published and sends only the rest.

**One publisher at a time** (:class:`PublishLease`): the stage run of the DAG
and the continuous worker (:mod:`ehub.feed_worker`) may run side by side, so
a ``sending`` row could belong to a live publisher; a lease held while
publishing — a PostgreSQL session advisory lock, on SQLite an exclusive lock
on a file beside the database — makes any ``sending`` row found by the lease
holder a dead publisher's, and no row is claimed twice. The lease dies with
its process (``kill -9`` included); the worker releases it between cycles, so
a DAG run waits at most one worker batch.

Per batch (``settings.batch_size`` rows in the stage, :data:`FEED_BATCH` in
the worker): one query for the ids, one to mark them, two to read them with
their records (primary-key look-ups, documents decoded by msgspec); envelopes
built and signed; one produce request per broker
(:class:`connectors.kafka_batch.BatchPublisher`: acks=all, one record batch per
partition); one bulk ``UPDATE`` of the marks (``unnest`` arrays on PostgreSQL)
with the ``returned`` audit events. On PostgreSQL the next claim and the
previous marks run in helper threads meanwhile. Offices are re-read every
batch: an office revoked since its rows were written gets nothing more (the
rows are ``withheld``).
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import msgspec
from sqlalchemy import (
    BigInteger,
    Integer,
    Text,
    any_,
    bindparam,
    cast,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.schema import Table

from connectors.kafka_batch import BatchPublisher
from connectors.kafka_feed import FeedMessage, scan_ids
from ehub.audit import Event, append
from ehub.config import Settings
from ehub.errors import BrokerUnavailable, StoreError, StoreUnavailable, Transient
from ehub.feeds import FeedSigner, envelope
from ehub.offices import Office, RecordKind, list_offices
from ehub.pipeline import StageResult
from ehub.pipeline.faults import crash_point
from ehub.routing import division_of, view_for
from ehub.store.db import Store, utcnow
from ehub.store.models import CaseRow, FeedMessageRow, LicenseRow, ReturnedRecord

log = logging.getLogger(__name__)

FEED_BATCH = 2000
"""Rows per batch of the continuous worker and the bench (the stage run: ``settings.batch_size``):
one produce request, one record batch per partition."""
LEASE_WAIT_S = 600.0
_LEASE_KEY = 0x65687570  # "ehup": the publish lease (the audit chain's lock is "ehub")
_SQLITE_LOCKS: dict[str, threading.Lock] = {}
_decode = msgspec.json.Decoder(dict[str, Any]).decode


class PublishLeaseBusy(StoreError, Transient):
    """Another publisher held the publish lease for longer than the wait allowed."""


@dataclass(frozen=True, slots=True)
class _Todo:
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


# --- the lease ----------------------------------------------------------------------


class PublishLease:
    """The right to publish, one holder per hub store (see the module docstring)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._conn: Connection | None = None
        self._file: IO[bytes] | None = None
        self._thread_lock: threading.Lock | None = None

    def acquire(self, wait: float = LEASE_WAIT_S) -> None:
        """Block until held; PublishLeaseBusy after ``wait`` seconds."""
        if self.store.dialect == "postgresql":
            conn = self.store.engine.connect()
            try:
                # SET in the transaction, then RESET: the pooled connection keeps no timeout.
                conn.execute(text(f"SET lock_timeout = {max(1, int(wait * 1000))}"))
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _LEASE_KEY})
                conn.execute(text("RESET lock_timeout"))
                conn.commit()  # the lock is the session's, not the transaction's
            except DBAPIError as exc:
                conn.close()
                where = self.store.engine.url.render_as_string()  # password hidden
                if getattr(exc.orig, "sqlstate", None) == "55P03":  # lock_not_available
                    raise PublishLeaseBusy(
                        f"publish lease of {where} not obtained in {wait:.0f} s "
                        "(another publisher is running)"
                    ) from exc
                raise StoreUnavailable(f"publish lease of {where}: {exc.orig}") from exc
            self._conn = conn
            return
        path = _sqlite_path(self.store)
        if path is None:  # an in-memory database: one process, a thread lock
            lock = _SQLITE_LOCKS.setdefault(str(self.store.engine.url), threading.Lock())
            if not lock.acquire(timeout=wait):
                raise PublishLeaseBusy("publish lease of the in-memory store is held")
            self._thread_lock = lock
            return
        fh = open(path.with_name(path.name + ".publish.lock"), "ab")  # noqa: SIM115
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError as exc:
                if time.monotonic() > deadline:
                    fh.close()
                    raise PublishLeaseBusy(
                        f"publish lease {fh.name} not obtained in {wait:.0f} s "
                        "(another publisher is running)"
                    ) from exc
                time.sleep(0.05)
        self._file = fh

    def release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _LEASE_KEY})
                self._conn.commit()
            finally:
                self._conn.close()
                self._conn = None
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None
        if self._thread_lock is not None:
            self._thread_lock.release()
            self._thread_lock = None

    @contextmanager
    def held(self, wait: float = LEASE_WAIT_S) -> Iterator[None]:
        self.acquire(wait)
        try:
            yield
        finally:
            self.release()


def _sqlite_path(store: Store) -> Path | None:
    db = make_url(store.url).database
    return None if not db or db == ":memory:" else Path(db).resolve()


# --- reading and marking rows ---------------------------------------------------------


_FEED_TABLE: Table = FeedMessageRow.__table__  # type: ignore[assignment]  # a FromClause to mypy


def _ids_in(column: Any, ids: Sequence[int], dialect: str) -> Any:
    """``column`` among ``ids``: one array parameter on PostgreSQL (no 2,000-parameter IN)."""
    if dialect == "postgresql":
        return column == any_(bindparam(None, list(ids), type_=ARRAY(BigInteger), unique=True))
    return column.in_(list(ids))


def _claim(s: Any, limit: int, dialect: str) -> list[_Todo]:
    """Mark the next ``limit`` pending rows ``sending``; them with their records, in id order."""
    ids = list(
        s.scalars(
            select(FeedMessageRow.id)
            .where(FeedMessageRow.state == "pending")
            .order_by(FeedMessageRow.id)
            .limit(limit)
        )
    )
    if not ids:
        return []
    s.execute(
        update(FeedMessageRow)
        .where(_ids_in(FeedMessageRow.id, ids, dialect))
        .values(state="sending")
        .execution_options(synchronize_session=False)
    )
    feed = s.execute(
        select(FeedMessageRow.id, FeedMessageRow.kind, FeedMessageRow.office,
               FeedMessageRow.topic, FeedMessageRow.message_key, FeedMessageRow.message_id,
               FeedMessageRow.license_id, FeedMessageRow.case_id, FeedMessageRow.returned_id)
        .where(_ids_in(FeedMessageRow.id, ids, dialect))
        .order_by(FeedMessageRow.id)  # the order of commit: a record's versions stay ordered
    ).all()  # fmt: skip
    # Records by primary key (index look-ups, whatever the size of the tables); the
    # documents as text, decoded by msgspec: twice as fast as the JSON type's json.loads.
    records: dict[tuple[str, int], tuple[Any, ...]] = {}
    lic_ids = [r.license_id for r in feed if r.license_id is not None]
    if lic_ids:
        for rid, *rest in s.execute(
            select(LicenseRow.id, LicenseRow.identifier, LicenseRow.version, LicenseRow.status,
                   cast(LicenseRow.document, Text))
            .where(_ids_in(LicenseRow.id, lic_ids, dialect))
        ):  # fmt: skip
            records["license", rid] = tuple(rest)
    case_ids = [r.case_id for r in feed if r.case_id is not None]
    if case_ids:
        for rid, *rest in s.execute(
            select(CaseRow.id, CaseRow.case_number, CaseRow.version, literal(None),
                   cast(CaseRow.document, Text))
            .where(_ids_in(CaseRow.id, case_ids, dialect))
        ):  # fmt: skip
            records["case", rid] = tuple(rest)
    returned_ids = [r.returned_id for r in feed if r.returned_id is not None]
    if returned_ids:  # other departments' versions from the provincial return interface
        for rid, *rest in s.execute(
            select(ReturnedRecord.id, ReturnedRecord.identifier, ReturnedRecord.version,
                   ReturnedRecord.status, cast(ReturnedRecord.document, Text))
            .where(_ids_in(ReturnedRecord.id, returned_ids, dialect))
        ):  # fmt: skip
            records["returned", rid] = tuple(rest)
    out = []
    for r in feed:
        ident, version, status, doc = records[(
            ("license", r.license_id) if r.license_id is not None
            else ("case", r.case_id) if r.case_id is not None
            else ("returned", r.returned_id)
        )]  # fmt: skip
        out.append(_Todo(r.id, r.kind, r.office, r.topic, r.message_key, r.message_id,
                         ident, version, status, _decode(doc)))  # fmt: skip
    return out


def _mark_published(s: Any, todo: Sequence[_Todo], acks: dict[str, Any], dialect: str) -> None:
    now = utcnow()
    if dialect == "postgresql":
        s.execute(
            text(
                "UPDATE feed_messages AS f SET state = 'published', partition = v.p, "
                '"offset" = v.o, published_at = :now '
                "FROM unnest(:ids, :parts, :offs) AS v(id, p, o) WHERE f.id = v.id"
            ).bindparams(
                bindparam("ids", type_=ARRAY(BigInteger)),
                bindparam("parts", type_=ARRAY(Integer)),
                bindparam("offs", type_=ARRAY(BigInteger)),
            ),
            {
                "now": now,
                "ids": [t.id for t in todo],
                "parts": [acks[t.message_id].partition for t in todo],
                "offs": [acks[t.message_id].offset for t in todo],
            },
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


def _withhold(store: Store, rows: list[_Todo]) -> None:
    with store.session() as s:
        s.execute(
            update(FeedMessageRow)
            .where(_ids_in(FeedMessageRow.id, [t.id for t in rows], store.dialect))
            .values(state="withheld")
            .execution_options(synchronize_session=False)
        )
        append(s, [Event("return_withheld", t.identifier, t.version,
                         {"office": t.office, "reason": "office revoked"}) for t in rows])  # fmt: skip


def _message(t: _Todo, office: Office, signer: FeedSigner) -> FeedMessage:
    """The office's view of the record in a signed envelope. An office revoked since
    the row was written still gets nothing beyond what it was granted then: its
    registry entry (fields, masking) is what shapes the view."""
    body = envelope(
        kind=t.kind, identifier=t.identifier, version=t.version, status=t.status,
        division=division_of(t.kind, t.document), office=t.office,
        payload=view_for(office, t.kind, t.document), message_id=t.message_id, signer=signer,
    )  # fmt: skip
    return FeedMessage(t.topic, t.message_key, t.message_id, body)


# --- publishing -------------------------------------------------------------------------


def recover(settings: Settings, store: Store) -> int:
    """Resolve rows left ``sending`` by a dead publisher; how many were already on the
    broker. Call with the lease held (a live publisher's rows are ``sending`` too)."""
    with store.session() as s:
        stuck = list(
            s.execute(
                select(FeedMessageRow.id, FeedMessageRow.topic, FeedMessageRow.message_id).where(
                    FeedMessageRow.state == "sending"
                )
            )
        )
    if not stuck:
        return 0
    found = scan_ids(settings.require("broker"), {t for _, t, _ in stuck})
    now = utcnow()
    on_broker = [
        {"b_id": row_id, "partition": found[mid].partition, "offset": found[mid].offset}
        for row_id, _topic, mid in stuck
        if mid in found
    ]
    missing = [row_id for row_id, _topic, mid in stuck if mid not in found]
    with store.session() as s:
        if on_broker:
            table = _FEED_TABLE
            s.execute(
                update(table)
                .where(table.c.id == bindparam("b_id"))
                .values(state="published", published_at=now),
                on_broker,
            )
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


@dataclass
class Publication:
    """A publisher of one process: its producer, signer and counters. Publish with
    the lease held (:meth:`drain`); :meth:`close` at the end."""

    settings: Settings
    store: Store
    batch: int = FEED_BATCH
    attempts: int = 4
    signer: FeedSigner = field(init=False)
    batches: int = 0
    published: int = 0
    recovered: int = 0
    withheld: int = 0
    _publisher: BatchPublisher | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.broker = self.settings.require("broker")
        self.signer = FeedSigner.dev(self.settings.home)

    @property
    def publisher(self) -> BatchPublisher:
        if self._publisher is None:
            self._publisher = BatchPublisher(self.broker)
        return self._publisher

    def close(self) -> None:
        if self._publisher is not None:
            self._publisher.close()
            self._publisher = None

    def drain(self, *, max_batches: int | None = None) -> int:
        """Recover, then publish batches until none is pending (or ``max_batches``);
        messages published.

        On PostgreSQL the database work overlaps the rest: the next batch is claimed
        and the previous one marked (each on a connection of its own, in a helper
        thread) while this one is signed and sent. Batches still reach the broker one
        after the other, in claim order, each marked only after its acknowledgement.
        """
        self.recovered += recover(self.settings, self.store)
        before = self.published
        if self.store.dialect == "postgresql":
            with ThreadPoolExecutor(2, thread_name_prefix="publish") as pool:
                self._drain(max_batches, pool)
        else:
            self._drain(max_batches, None)
        return self.published - before

    def _drain(self, max_batches: int | None, pool: ThreadPoolExecutor | None) -> None:
        def later(fn: Callable[..., Any], *args: Any) -> Future[Any]:
            if pool is not None:
                return pool.submit(fn, *args)
            done: Future[Any] = Future()
            done.set_result(fn(*args))
            return done

        done = failures = 0
        claim: Future[Any] | None = later(self._claim)
        marking: Future[Any] | None = None
        while claim is not None:
            offices, todo = claim.result()
            if not todo:
                break
            self.batches += 1
            done += 1
            batch_no = self.batches
            crash_point(self.settings.fault, "publish", batch_no, "before")
            more = max_batches is None or done < max_batches
            # Serially, the next claim waits until this batch is marked (below).
            claim = later(self._claim) if more and pool is not None else None
            try:
                todo, acks = self._send(todo, offices)
            except BrokerUnavailable:
                for f in (claim, marking):  # settle what is in flight, then scan
                    if f is not None:
                        f.result()
                marking = None
                failures += 1
                self.close()
                if failures >= self.attempts:
                    raise  # the rows stay "sending": the next lease holder settles them
                # Part of the batch may have reached the broker: settle it by a scan.
                time.sleep(min(0.5 * 2**failures, 10.0))
                self.recovered += recover(self.settings, self.store)
                claim = later(self._claim) if more else None
                continue
            crash_point(self.settings.fault, "publish", batch_no, "acked")
            if marking is not None:
                marking.result()
            marking = later(self._record, todo, acks, batch_no)
            if more and pool is None:
                claim = later(self._claim)
        if marking is not None:
            marking.result()

    def _claim(self) -> tuple[dict[str, Office], list[_Todo]]:
        offices = {o.code: o for o in list_offices(self.store)}
        with self.store.session() as s:
            return offices, _claim(s, self.batch, self.store.dialect)

    def _send(
        self, todo: list[_Todo], offices: dict[str, Office]
    ) -> tuple[list[_Todo], dict[str, Any]]:
        withheld = [t for t in todo if not offices[t.office].active]
        if withheld:  # revoked since the rows were written: nothing more reaches it
            _withhold(self.store, withheld)
            self.withheld += len(withheld)
            todo = [t for t in todo if offices[t.office].active]
        msgs = [_message(t, offices[t.office], self.signer) for t in todo]
        acks = {p.message_id: p for p in self.publisher.publish(msgs)} if msgs else {}
        return todo, acks

    def _record(self, todo: list[_Todo], acks: dict[str, Any], batch_no: int) -> None:
        if todo:
            with self.store.session() as s:
                _mark_published(s, todo, acks, self.store.dialect)
        self.published += len(todo)
        crash_point(self.settings.fault, "publish", batch_no)


def run(
    settings: Settings,
    store: Store,
    *,
    attempts: int = 4,
    batch: int | None = None,
    lease_wait: float = LEASE_WAIT_S,
) -> StageResult:
    """Publish every pending row (the DAG's task): waits for the lease while the
    continuous worker publishes a batch."""
    pub = Publication(settings, store, batch=batch or settings.batch_size,
                      attempts=attempts)  # fmt: skip
    lease = PublishLease(store)
    try:
        with lease.held(lease_wait):
            pub.drain()
    finally:
        pub.close()
    log.info("publish: %d batches, %d messages published, %d recovered, %d withheld (pid %d)",
             pub.batches, pub.published, pub.recovered, pub.withheld, os.getpid())  # fmt: skip
    return StageResult("publish", pub.batches,
                       {"published": pub.published, "recovered": pub.recovered})  # fmt: skip
