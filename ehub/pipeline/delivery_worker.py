"""Continuous delivery: a long-running worker that sends outbox rows as they are committed.

The delivery DAGs run when Airflow sees new sealed licenses or case records and
as a sweep every 10 minutes; that bounds the delay from commit to receipt by
Airflow's scheduling (seconds to minutes). Licenses sealed on demand (the
sealing API) or in a busy hour should reach the platforms within a second:
``ehub deliveries worker`` polls the outbox of each destination every ``poll``
seconds and sends what is pending, keeping its HTTP connections open.

It runs the same :func:`ehub.pipeline.deliver.run` as the DAGs — same
idempotency keys, receipts, dead letters and circuit breaker — so worker and
DAG sending the same row at once costs a duplicate receipt, never a double
insert. A destination that is down is retried with growing pauses (up to 30 s)
without holding up the other one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ehub.config import Settings
from ehub.errors import DestinationUnavailable
from ehub.pipeline import deliver
from ehub.store.db import Store

log = logging.getLogger(__name__)

MAX_PAUSE_S = 30.0


@dataclass
class WorkerStats:
    loops: int = 0
    delivered: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    unavailable: dict[str, int] = field(default_factory=dict)


def serve(
    settings: Settings,
    store: Store,
    *,
    destinations: Sequence[str] = ("provincial", "national"),
    poll: float = 0.2,
    stop: threading.Event | None = None,
    clients: Mapping[str, deliver.BatchClient] | None = None,
) -> WorkerStats:
    """Deliver until ``stop`` is set; what was delivered, per destination."""
    stop = stop or threading.Event()
    own = {
        d: deliver.client_for(settings, d) for d in destinations if not clients or d not in clients
    }
    clients = {**own, **(clients or {})}
    stats = WorkerStats()
    resume_at = dict.fromkeys(destinations, 0.0)
    pause = dict.fromkeys(destinations, poll)
    log.info("delivery worker: %s, polling every %.2fs", ", ".join(destinations), poll)
    try:
        while not stop.is_set():
            stats.loops += 1
            busy = False
            for dest in destinations:
                if time.monotonic() < resume_at[dest]:
                    continue
                try:
                    r = deliver.run(settings, store, destination=dest, client=clients[dest],
                                    attempts=3, base_delay=0.2)  # fmt: skip
                except DestinationUnavailable as exc:
                    stats.unavailable[dest] = stats.unavailable.get(dest, 0) + 1
                    pause[dest] = min(pause[dest] * 2, MAX_PAUSE_S)
                    resume_at[dest] = time.monotonic() + pause[dest]
                    log.warning("delivery worker: %s unavailable, next try in %.1fs: %s",
                                dest, pause[dest], exc)  # fmt: skip
                    continue
                pause[dest] = poll
                sent = r.counts.get("delivered", 0) + r.counts.get("rejected", 0)
                stats.delivered[dest] = stats.delivered.get(dest, 0) + r.counts.get("delivered", 0)
                stats.rejected[dest] = stats.rejected.get(dest, 0) + r.counts.get("rejected", 0)
                busy = busy or sent > 0
            if not busy:
                stop.wait(poll)
    finally:
        for client in own.values():
            client.close()
    return stats
