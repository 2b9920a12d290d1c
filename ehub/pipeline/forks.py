"""A stage's work forked among processes of its own, one per shard.

CPU-bound stages (sealing, publishing) do their per-record work in Python
under one interpreter lock: more cores need more processes. A stage run deals
its work into disjoint shards and calls :func:`run_forked`, which forks one
process per shard (``fork``: the child starts with the parent's settings and
code, nothing to pickle), waits for every one and returns what each reported:
a tuple of counters, or the exception it failed with.

A child opens connections of its own and never uses the parent's: objects the
parent holds are frozen out of the child's garbage collection, since a
connection collected there would close the parent's session on its socket.

A run interrupted while its children work (the task killed by Airflow) kills
them and waits for them before it lets the interruption go on: no shard
outlives the stage run that started it. A child that dies without reporting
(killed, out of memory, a fault injection's exit) is reported by ``died``.
Linux only (``fork``); :func:`can_fork` says whether this platform has it.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Generic, TypeVar

from ehub.pipeline.faults import EXIT_CODE

log = logging.getLogger(__name__)

S = TypeVar("S")


MAX_DEFAULT_WORKERS = 4


def can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


def per_core(configured: int) -> int:
    """``configured`` processes, or (0) one per core, at most :data:`MAX_DEFAULT_WORKERS`."""
    if configured:
        return configured
    return max(1, min(os.cpu_count() or 1, MAX_DEFAULT_WORKERS))


@dataclass
class Forked(Generic[S]):
    """What the shards of one :func:`run_forked` call reported."""

    counters: list[tuple[int, ...]] = field(default_factory=list)
    """The counters of each shard that finished."""
    failures: list[BaseException] = field(default_factory=list)
    """The exception of each shard that failed or died, in shard order."""
    killed: bool = False
    """A shard ended with the fault injection's exit code (:data:`EXIT_CODE`)."""

    def total(self, width: int) -> tuple[int, ...]:
        """The finished shards' counters added up."""
        sums = [0] * width
        for counts in self.counters:
            for i, n in enumerate(counts):
                sums[i] += n
        return tuple(sums)

    def settle(self, fault: str) -> None:
        """End the stage run as its shards did, once their counters are taken: under
        fault injection (``fault``) it dies with a shard killed by it; otherwise the
        first shard's failure is raised."""
        if self.killed and fault:
            os._exit(EXIT_CODE)
        if self.failures:
            raise self.failures[0]


def run_forked(
    work: Callable[[S], tuple[int, ...]],
    shards: Sequence[S],
    *,
    name: str,
    died: Callable[[S, int | None, int | None], BaseException],
    failed: Callable[[str], BaseException],
) -> Forked[S]:
    """Run ``work(shard)`` in a forked process per shard; wait for all of them.

    ``died(shard, pid, exit code)``: the error of a shard that ended without a
    report; ``failed(text)``: the error standing for an exception of a shard that
    could not be sent back as it is (it does not pickle)."""
    ctx = multiprocessing.get_context("fork")
    running: list[tuple[Any, Connection, S]] = []
    frozen_before = gc.get_freeze_count()
    gc.collect()
    gc.freeze()
    try:
        try:
            for shard in shards:
                receive, send = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_child, args=(send, work, shard, failed),
                                   name=f"{name}-{len(running)}")  # fmt: skip
                proc.start()
                send.close()
                running.append((proc, receive, shard))
        finally:
            if not frozen_before:  # a heap frozen by the caller is thawed by the caller
                gc.unfreeze()
        log.info("%s: %d shards (pids %s)", name, len(running),
                 ", ".join(str(p.pid) for p, _r, _s in running))  # fmt: skip
        return _collect(running, died, failed)
    except BaseException:
        for proc, _receive, _shard in running:
            if proc.is_alive():
                proc.kill()
            proc.join()
        raise


def _collect(
    running: list[tuple[Any, Connection, S]],
    died: Callable[[S, int | None, int | None], BaseException],
    failed: Callable[[str], BaseException],
) -> Forked[S]:
    out: Forked[S] = Forked()
    for proc, receive, shard in running:
        try:
            report = receive.recv()
        except EOFError:
            report = None
        except Exception as exc:  # an exception that could not be unpickled
            report = ("error", failed(f"{proc.name} failed: {exc!r}"))
        finally:
            receive.close()
        proc.join()
        if report is None:
            out.killed = out.killed or proc.exitcode == EXIT_CODE
            out.failures.append(died(shard, proc.pid, proc.exitcode))
        elif report[0] == "error":
            out.failures.append(report[1])
        else:
            out.counters.append(tuple(report[1]))
    return out


def _child(
    report: Connection,
    work: Callable[[S], tuple[int, ...]],
    shard: S,
    failed: Callable[[str], BaseException],
) -> None:
    # The parent's handler (Airflow's, which ends its task) is not the shard's: a
    # terminated shard just ends, its work left for the next run.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        outcome: tuple[str, Any] = ("ok", tuple(work(shard)))
    except Exception as exc:
        outcome = ("error", exc)
    try:
        report.send(outcome)
    except Exception as exc:  # the exception does not pickle: its text then
        report.send(("error", failed(f"shard failed: {outcome[1]!r}")))
        log.debug("shard report not sent as is: %r", exc)
    report.close()
