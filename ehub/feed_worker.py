"""Continuous return feeds: publish feed outbox rows as soon as they are committed.

The return-feed DAG publishes when Airflow runs it (seconds to minutes after a
record is sealed). ``ehub feeds worker`` keeps a publisher open and publishes
pending rows within a moment of their commit: on PostgreSQL it sleeps on
``LISTEN ehub_feeds`` (the feed rows' transaction sends ``NOTIFY`` at commit,
:func:`ehub.feeds.insert_rows`), with a poll every ``idle`` seconds as a
safety net; on SQLite it polls every ``poll`` seconds.

It runs the same :class:`ehub.pipeline.publish.Publication` as the DAG's
publish task, under the same publish lease (:class:`~ehub.pipeline.publish.PublishLease`),
taken for a few batches at a time: the DAG's task and the worker never publish
at once, so a row is never sent twice, and whoever takes the lease first settles
what a killed publisher left ``sending`` (topic scan, then re-send of the rest).
A broker or store that is down is retried with growing pauses (up to 30 s).

Must not log records (ids and counts only).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import make_url

from ehub.config import Settings
from ehub.errors import BrokerUnavailable, StoreUnavailable
from ehub.feeds import NOTIFY_CHANNEL
from ehub.pipeline.publish import FEED_BATCH, Publication, PublishLease, PublishLeaseBusy
from ehub.store.db import Store

log = logging.getLogger(__name__)

MAX_PAUSE_S = 30.0
BATCHES_PER_LEASE = 5
"""Batches published per lease before it is handed back (a DAG run waits at most this)."""


@dataclass
class FeedWorkerStats:
    loops: int = 0
    published: int = 0
    recovered: int = 0
    withheld: int = 0
    unavailable: int = 0


class _Wakeup:
    """Waits for the next feed commit: LISTEN on PostgreSQL, a plain sleep elsewhere."""

    def __init__(self, store: Store) -> None:
        self._url = ""
        self._conn: Any = None
        if store.dialect == "postgresql":
            url = make_url(store.url).set(drivername="postgresql")
            self._url = url.render_as_string(hide_password=False)
            self._listen()

    def _listen(self) -> None:
        import psycopg

        try:
            self._conn = psycopg.connect(self._url, autocommit=True)
            self._conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        except psycopg.Error as exc:  # the store is down: poll until it is back
            log.warning("feed worker: LISTEN failed, polling meanwhile: %s", type(exc).__name__)
            self._conn = None

    @property
    def listening(self) -> bool:
        return bool(self._url)

    def wait(self, timeout: float, stop: threading.Event) -> None:
        if self._url and self._conn is None:
            self._listen()
        if self._conn is None:
            stop.wait(min(timeout, 1.0) if self._url else timeout)
            return
        try:
            for _ in self._conn.notifies(timeout=timeout, stop_after=1):
                pass
        except Exception as exc:  # a dropped connection: listen again next time
            log.warning("feed worker: LISTEN connection lost: %s", type(exc).__name__)
            self.close()

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


@contextmanager
def _wakeup(store: Store) -> Iterator[_Wakeup]:
    w = _Wakeup(store)
    try:
        yield w
    finally:
        w.close()


def serve(
    settings: Settings,
    store: Store,
    *,
    poll: float = 0.2,
    idle: float = 2.0,
    batch: int = FEED_BATCH,
    stop: threading.Event | None = None,
) -> FeedWorkerStats:
    """Publish until ``stop`` is set; what was published.

    ``poll``: seconds between outbox polls without LISTEN/NOTIFY (SQLite);
    ``idle``: the longest sleep on PostgreSQL when no commit wakes the worker.
    """
    stop = stop or threading.Event()
    stats = FeedWorkerStats()
    pub = Publication(settings, store, batch=batch, attempts=2)
    lease = PublishLease(store)
    pause = poll
    with _wakeup(store) as wakeup:
        log.info("feed worker: %s, %s", "LISTEN " + NOTIFY_CHANNEL if wakeup.listening
                 else f"polling every {poll:.2f}s", f"batches of {batch}")  # fmt: skip
        try:
            while not stop.is_set():
                stats.loops += 1
                before = pub.batches
                try:
                    with lease.held(wait=max(idle, 5.0)):
                        pub.drain(max_batches=BATCHES_PER_LEASE)
                except PublishLeaseBusy:
                    continue  # the DAG's task is publishing: try again
                except (BrokerUnavailable, StoreUnavailable) as exc:
                    stats.unavailable += 1
                    pause = min(max(pause, poll) * 2, MAX_PAUSE_S)
                    log.warning("feed worker: %s, next try in %.1fs: %s", type(exc).__name__,
                                pause, exc)  # fmt: skip
                    stop.wait(pause)
                    continue
                pause = poll
                stats.published, stats.recovered = pub.published, pub.recovered
                stats.withheld = pub.withheld
                if pub.batches - before >= BATCHES_PER_LEASE:
                    continue  # a backlog: straight on, after handing the lease back
                wakeup.wait(idle if wakeup.listening else poll, stop)
        finally:
            pub.close()
    log.info("feed worker: stopped; %d published, %d recovered", stats.published,
             stats.recovered)  # fmt: skip
    return stats
