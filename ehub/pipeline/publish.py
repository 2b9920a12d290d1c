"""Publish stage: pending return-feed outbox rows → the broker.

Exactly-once per record version and topic: a batch is first marked
``sending`` (committed), then published and acknowledged, then marked
``published`` with its partition and offset. If the process dies in between,
the next publisher finds ``sending`` rows, scans their topics for the message
ids already there, marks those published and sends only the rest.

**One publisher at a time** (:class:`PublishLease`, :mod:`ehub.pipeline.publish_lease`):
the stage run of the DAG and the continuous worker (:mod:`ehub.feed_worker`) take
turns, so any ``sending`` row the lease holder finds is a dead publisher's, and
no row is claimed twice. The worker releases the lease between cycles, so a DAG
run waits at most one worker batch.

**Shards.** A stage run on PostgreSQL with a backlog (:data:`PARALLEL_MIN_ROWS`)
splits it by office among processes of its own (:mod:`ehub.pipeline.publish_shards`):
each office's rows go to exactly one process, which claims, sends and marks
them in id order as a lone publisher would, under the run's lease. Building and
signing envelopes is most of a message's CPU, so this is what uses more than one core.

Per batch (``settings.batch_size`` rows in the stage, :data:`FEED_BATCH` in
the worker): one claim (:mod:`ehub.pipeline.publish_rows`); envelopes built and
signed with one signature over their hash tree (:mod:`ehub.feed_tree`); one produce request per broker (:class:`connectors.kafka_batch.BatchPublisher`:
acks=all, one record batch per partition); one bulk ``UPDATE`` of the marks
with the ``returned`` audit events. On PostgreSQL the next claim and the
previous marks run in helper threads meanwhile. Offices are re-read every
batch: an office revoked since its rows were written gets nothing more (the
rows are ``withheld``).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import InitVar, dataclass, field
from typing import Any

from connectors.kafka_batch import BatchPublisher
from connectors.kafka_feed import FeedMessage, Published
from ehub.allocator import frozen_heap
from ehub.config import Settings
from ehub.errors import BrokerUnavailable
from ehub.feeds import FeedSigner, envelope_body, sign_envelopes
from ehub.offices import Office, list_offices
from ehub.pipeline import StageResult
from ehub.pipeline.faults import crash_point
from ehub.pipeline.publish_lease import LEASE_WAIT_S, PublishLease, PublishLeaseBusy
from ehub.pipeline.publish_rows import Todo, claim, mark_published, recover, withhold
from ehub.routing import division_of, view_plan
from ehub.store.db import Store

__all__ = [
    "FEED_BATCH",
    "LEASE_WAIT_S",
    "PARALLEL_MIN_ROWS",
    "Publication",
    "PublishLease",
    "PublishLeaseBusy",
    "recover",
    "run",
]

log = logging.getLogger(__name__)

FEED_BATCH = 2000
"""Rows per batch of the continuous worker and the bench (the stage run: ``settings.batch_size``):
one produce request, one record batch per partition."""
PARALLEL_MIN_ROWS = 4000
"""A stage run shards a backlog of at least this many rows; a smaller one is not worth
the processes' start (a few tenths of a second)."""

_View = Callable[[Mapping[str, Any]], dict[str, Any]]


def _body(t: Todo, view: _View) -> bytes:
    """The office's view of the record in an envelope, to be signed with its batch. An
    office revoked since the row was written still gets nothing beyond what it was
    granted then: its registry entry (fields, masking) is what shapes the view."""
    return envelope_body(
        kind=t.kind, identifier=t.identifier, version=t.version, status=t.status,
        division=division_of(t.kind, t.document), office=t.office,
        payload=view(t.document), message_id=t.message_id,
    )  # fmt: skip


@dataclass
class Publication:
    """A publisher of one process: its producer, signer and counters. Publish with
    the lease held (:meth:`drain`); :meth:`close` at the end. ``offices``: publish
    only their rows (a shard); None: every office's."""

    settings: Settings
    store: Store
    batch: int = FEED_BATCH
    attempts: int = 4
    offices: frozenset[str] | None = None
    with_signer: InitVar[FeedSigner | None] = None
    """A signer already loaded (a shard's, its parent's); None: the hub's key is loaded."""
    signer: FeedSigner = field(init=False)
    batches: int = 0
    published: int = 0
    recovered: int = 0
    withheld: int = 0
    _publisher: BatchPublisher | None = field(default=None, init=False)

    def __post_init__(self, with_signer: FeedSigner | None) -> None:
        self.broker = self.settings.require("broker")
        self.signer = with_signer or FeedSigner.dev(self.settings.home)

    @property
    def publisher(self) -> BatchPublisher:
        if self._publisher is None:
            self._publisher = BatchPublisher(self.broker, tls=self.settings.broker_tls())
        return self._publisher

    def close(self) -> None:
        if self._publisher is not None:
            self._publisher.close()
            self._publisher = None

    def recover(self) -> int:
        """Settle what a dead publisher left ``sending`` (of this shard's offices)."""
        found = recover(self.settings, self.store, self.offices)
        self.recovered += found
        return found

    def drain(self, *, max_batches: int | None = None) -> int:
        """Recover, then publish batches until none is pending (or ``max_batches``);
        messages published.

        On PostgreSQL the database work overlaps the rest: the next batch is claimed
        and the previous one marked (each on a connection of its own, in a helper
        thread) while this one is signed and sent. Batches still reach the broker one
        after the other, in claim order, each marked only after its acknowledgement.
        """
        self.recover()
        before = self.published
        with frozen_heap():
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
        claimed: Future[Any] | None = later(self._claim)
        marking: Future[Any] | None = None
        while claimed is not None:
            offices, todo = claimed.result()
            if not todo:
                break
            self.batches += 1
            done += 1
            batch_no = self.batches
            crash_point(self.settings.fault, "publish", batch_no, "before")
            more = max_batches is None or done < max_batches
            # Serially, the next claim waits until this batch is marked (below).
            claimed = later(self._claim) if more and pool is not None else None
            try:
                todo, acks = self._send(todo, offices)
            except BrokerUnavailable:
                for f in (claimed, marking):  # settle what is in flight, then scan
                    if f is not None:
                        f.result()
                marking = None
                failures += 1
                self.close()
                if failures >= self.attempts:
                    raise  # the rows stay "sending": the next lease holder settles them
                # Part of the batch may have reached the broker: settle it by a scan.
                time.sleep(min(0.5 * 2**failures, 10.0))
                self.recover()
                claimed = later(self._claim) if more else None
                continue
            if marking is not None:  # the batch before is marked first: one in flight
                marking.result()
            crash_point(self.settings.fault, "publish", batch_no, "acked")
            marking = later(self._record, todo, acks, batch_no)
            if more and pool is None:
                claimed = later(self._claim)
        if marking is not None:
            marking.result()

    def _claim(self) -> tuple[dict[str, Office], list[Todo]]:
        offices = {o.code: o for o in list_offices(self.store)}
        with self.store.session() as s:
            return offices, claim(s, self.batch, self.store.dialect, self.offices)

    def _send(
        self, todo: list[Todo], offices: dict[str, Office]
    ) -> tuple[list[Todo], dict[str, Published]]:
        withheld = [t for t in todo if not offices[t.office].active]
        if withheld:  # revoked since the rows were written: nothing more reaches it
            withhold(self.store, withheld)
            self.withheld += len(withheld)
            todo = [t for t in todo if offices[t.office].active]
        views: dict[tuple[str, str], _View] = {}
        bodies = []
        for t in todo:
            view = views.get((t.office, t.kind))
            if view is None:
                view = views[t.office, t.kind] = view_plan(offices[t.office], t.kind)
            bodies.append(_body(t, view))
        # One signature for the batch, each envelope with its path to the signed root.
        signed = sign_envelopes(bodies, self.signer)
        msgs = [FeedMessage(t.topic, t.message_key, t.message_id, env)
                for t, env in zip(todo, signed, strict=True)]  # fmt: skip
        acks = {p.message_id: p for p in self.publisher.publish(msgs)} if msgs else {}
        return todo, acks

    def _record(self, todo: list[Todo], acks: dict[str, Published], batch_no: int) -> None:
        if todo:
            with self.store.session() as s:
                mark_published(s, todo, acks, self.store.dialect)
        self.published += len(todo)
        crash_point(self.settings.fault, "publish", batch_no)


def run(
    settings: Settings,
    store: Store,
    *,
    attempts: int = 4,
    batch: int | None = None,
    lease_wait: float = LEASE_WAIT_S,
    workers: int | None = None,
    min_parallel: int = PARALLEL_MIN_ROWS,
) -> StageResult:
    """Publish every pending row (the DAG's task): waits for the lease while the
    continuous worker publishes a batch.

    ``workers``: processes a backlog of ``min_parallel`` rows or more is sharded
    among on PostgreSQL (None: ``settings.publish_workers``, 0 there meaning one per
    core; 1: this process alone). A retry after a failure recovers what was in flight,
    as after any dead publisher."""
    from ehub.pipeline.publish_shards import default_workers, publish_sharded

    pub = Publication(settings, store, batch=batch or settings.batch_size,
                      attempts=attempts)  # fmt: skip
    lease = PublishLease(store)
    shards: list[frozenset[str]] = []
    try:
        with lease.held(lease_wait), frozen_heap():
            pub.recover()
            n = default_workers(settings) if workers is None else workers
            if n > 1 and store.dialect == "postgresql":
                shards = publish_sharded(pub, n, min_rows=min_parallel)
            pub.drain()  # the rest: offices outside the shards, rows written meanwhile
    finally:
        pub.close()
    log.info("publish: %d batches, %d messages published, %d recovered, %d withheld, "
             "%d shards (pid %d)", pub.batches, pub.published, pub.recovered, pub.withheld,
             len(shards), os.getpid())  # fmt: skip
    return StageResult("publish", pub.batches,
                       {"published": pub.published, "recovered": pub.recovered})  # fmt: skip
