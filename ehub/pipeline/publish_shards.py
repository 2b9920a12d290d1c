"""Publish shards: a stage run's backlog split by office among processes of its own.

A message's CPU goes mostly to signing its envelope (ECDSA), masking and
encoding, all under one interpreter lock; more cores need more processes. The
stage run that holds the publish lease (:func:`ehub.pipeline.publish.run`)
counts the pending rows per office, deals the offices into shards of about
equal size (:func:`plan_shards`: every office in exactly one) and forks one
process per shard. Each publishes its offices' rows as a lone publisher would
(:class:`~ehub.pipeline.publish.Publication` with ``offices``): claims them in
id order, sends, marks them after the broker's acknowledgement, and on a broker
failure recovers only its own offices' ``sending`` rows. An office's topic is
written by one process only, so its order is kept; no row is in two shards, so
none is sent twice. The parent waits for every shard, then drains what is left
(rows of offices that had none pending when it counted, rows written meanwhile).

**The lease covers the shards.** They are forked while the parent holds the
lease, so they inherit its database connection's socket (and never use it):
PostgreSQL ends that session, releasing the lease, only when the last process
holding the socket is gone. A shard that outlives a killed parent therefore
still holds the lease until it ends, and no other publisher can meanwhile take
its ``sending`` rows for a dead publisher's. A run interrupted while its shards
run (the task killed by Airflow) kills them and waits for them before it lets go
of the lease: an unlock by the parent would free the lease whatever the children
hold.

A shard that fails (broker down after its attempts, store errors) reports its
exception; one that dies (killed) leaves its rows ``sending``. Either way the
run raises after every shard has ended, and the next lease holder settles the
in-flight rows by a topic scan. PostgreSQL and ``fork`` only (Linux); otherwise
the run publishes alone.

Must not be used without the lease held.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING

from ehub.config import Settings
from ehub.errors import HubError, Transient
from ehub.feeds import FeedSigner
from ehub.pipeline.forks import can_fork, per_core, run_forked
from ehub.pipeline.publish_rows import pending_by_office
from ehub.store.db import Store

if TYPE_CHECKING:
    from ehub.pipeline.publish import Publication

log = logging.getLogger(__name__)

_COUNTERS = ("batches", "published", "recovered", "withheld")


class PublishShardFailed(HubError, Transient):
    """A publish shard process died without reporting (killed, out of memory); its
    in-flight rows are settled by the next publisher's topic scan."""


def default_workers(settings: Settings) -> int:
    """``settings.publish_workers``, or one per core (at most 4)."""
    return per_core(settings.publish_workers)


def plan_shards(pending: Mapping[str, int], workers: int) -> list[frozenset[str]]:
    """The offices dealt into at most ``workers`` shards of about equal pending rows
    (largest office first, each to the lightest shard); every office in exactly one,
    no shard empty."""
    loads: list[tuple[int, list[str]]] = [(0, []) for _ in range(max(1, workers))]
    for office, n in sorted(pending.items(), key=lambda kv: (-kv[1], kv[0])):
        i = min(range(len(loads)), key=lambda k: (loads[k][0], k))
        total, offices = loads[i]
        offices.append(office)
        loads[i] = (total + n, offices)
    return [frozenset(offices) for _total, offices in loads if offices]


def publish_sharded(pub: Publication, workers: int, *, min_rows: int) -> list[frozenset[str]]:
    """Publish the pending rows of ``pub``'s store in up to ``workers`` shard processes,
    when there are at least ``min_rows``; the shards (none: nothing was done). Adds the
    shards' counters to ``pub``'s. Call with the lease held."""
    if workers < 2 or pub.store.dialect != "postgresql":
        return []
    if not can_fork():
        return []
    pending = pending_by_office(pub.store)
    if sum(pending.values()) < min_rows:
        return []
    shards = plan_shards(pending, workers)
    if len(shards) < 2:
        return []
    forked = run_forked(
        functools.partial(_shard_main, pub.settings, pub.batch, pub.attempts, pub.signer),
        shards,
        name="ehub-publish-shard",
        died=lambda shard, pid, code: PublishShardFailed(
            f"publish shard of {len(shard)} offices (pid {pid}) died with exit code "
            f"{code}; its in-flight rows are settled by the next run"
        ),
        failed=lambda text: PublishShardFailed(f"publish {text}"),
    )
    log.info("publish: %d pending rows of %d offices in %d shards",
             sum(pending.values()), len(pending), len(shards))  # fmt: skip
    for name, n in zip(_COUNTERS, forked.total(len(_COUNTERS)), strict=True):
        setattr(pub, name, getattr(pub, name) + n)
    forked.settle(pub.settings.fault)
    return shards


def _shard_main(
    settings: Settings,
    batch: int,
    attempts: int,
    signer: FeedSigner,
    offices: Collection[str],
) -> tuple[int, ...]:
    """A shard process: publish ``offices``' rows; its counters."""
    from ehub.pipeline.publish import Publication

    store = Store(settings.database_url)  # connections of its own; the parent's untouched
    pub = Publication(settings, store, batch=batch, attempts=attempts,
                      offices=frozenset(offices), with_signer=signer)  # fmt: skip
    try:
        pub.drain()
        return tuple(getattr(pub, n) for n in _COUNTERS)
    finally:
        pub.close()
        store.dispose()
