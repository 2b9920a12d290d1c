"""Seal shards: a seal run's pending licenses dealt among processes, one per core.

Rendering and sealing a license is CPU work in Python (~1.5 ms on the fast
path, more with XMLDSig, OFD and the files); one process seals on one core. A
seal stage run with at least :data:`PARALLEL_MIN_ROWS` licenses to seal
(``normalized`` or ``held``) lists their ids, deals them into shards by a hash
of the license identifier (:func:`plan_shards`) and forks one process per
shard (:mod:`ehub.pipeline.forks`). Each seals its own ids in id order, in
batches, exactly as a lone seal run does: render, seal, write the files, then
one transaction per batch with the signatures, the outbox and feed rows and
the new states.

Why by identifier: every version of a license is in the same shard and is
sealed, committed and queued for delivery and the feeds after the versions
before it, as in a lone run. No license is in two shards, so none is sealed
twice; a shard that dies leaves its licenses ``normalized``, sealed by the next
run (a file written before the crash is written again). The parent then seals
what was normalized while the shards ran. The stage run fails after every
shard has ended if one failed or died; Airflow's retry seals what is left.

Why processes in the task rather than Airflow-mapped tasks: one task keeps the
seal stage's contract (``max_active_runs=1``, one run at a time, no two runs
over the same licenses) and its retry semantics unchanged, and the shards need
no scheduler round trip per partition. A province with more licenses than one
worker host seals adds hosts by giving each its own sources' seal runs.
"""

from __future__ import annotations

import logging
import zlib
from array import array
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import select

from ehub.config import Settings
from ehub.errors import HubError, Transient
from ehub.pipeline.forks import can_fork, per_core, run_forked
from ehub.store.db import Store
from ehub.store.models import LicenseRow

if TYPE_CHECKING:
    from ehub.pipeline.seal import SealContext

log = logging.getLogger(__name__)

PARALLEL_MIN_ROWS = 400
"""Licenses to seal from which a run forks its shards (below: sealed alone)."""

TO_SEAL = ("normalized", "held")


class SealShardFailed(HubError, Transient):
    """A seal shard process died without reporting (killed, out of memory); its
    licenses not yet recorded as sealed are sealed by the next run."""


def default_workers(settings: Settings) -> int:
    """``settings.seal_workers``, or one per core (at most 4)."""
    return per_core(settings.seal_workers)


def shard_of(identifier: str, shards: int) -> int:
    """The shard of a license identifier: the same on every run and in every process."""
    return zlib.crc32(identifier.encode()) % shards


def plan_shards(store: Store, workers: int) -> tuple[list[array[int]], int]:
    """The ids of the licenses to seal dealt into ``workers`` shards by identifier
    (each in id order), and the highest id dealt (0: none)."""
    shards: list[array[int]] = [array("q") for _ in range(workers)]
    last = 0
    with store.session() as s:
        rows = s.execute(
            select(LicenseRow.id, LicenseRow.identifier)
            .where(LicenseRow.state.in_(TO_SEAL))
            .order_by(LicenseRow.id)
            .execution_options(yield_per=5000)
        )
        for lid, ident in rows:
            shards[shard_of(ident, workers)].append(lid)
            last = lid
    return shards, last


def seal_sharded(
    settings: Settings,
    store: Store,
    ctx: SealContext,
    workers: int,
    *,
    min_rows: int = PARALLEL_MIN_ROWS,
) -> tuple[tuple[int, int, int], int] | None:
    """Seal the pending licenses in up to ``workers`` shard processes when there are at
    least ``min_rows``: the shards' (batches, sealed, held) and the highest id dealt;
    None when the run seals alone. Each shard starts from ``ctx``, made by the parent
    before any key was opened (keys and PKCS#11 sessions are opened in the shard)."""
    if workers < 2 or not can_fork():
        return None
    shards, last = plan_shards(store, workers)
    todo = [ids for ids in shards if ids]
    if sum(len(ids) for ids in todo) < min_rows or len(todo) < 2:
        return None
    from ehub.pipeline import seal

    store.engine.dispose()  # no pooled connection crosses the fork
    forked = run_forked(
        lambda ids: seal.seal_loop(settings, None, only=ids, ctx=ctx),
        todo,
        name="ehub-seal-shard",
        died=lambda ids, pid, code: SealShardFailed(
            f"seal shard of {len(ids)} licenses (pid {pid}) died with exit code {code}; "
            "its licenses not recorded as sealed are sealed by the next run"
        ),
        failed=lambda text: SealShardFailed(f"seal {text}"),
    )
    log.info("seal: %d licenses in %d shards", sum(len(ids) for ids in todo), len(todo))
    forked.settle(settings.fault)
    batches, sealed, held = forked.total(3)
    return (batches, sealed, held), last


def chunks(ids: Sequence[int], size: int) -> list[Sequence[int]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]
