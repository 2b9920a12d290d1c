"""The publish lease: one publisher at a time per hub store.

The stage run of the DAG (:func:`ehub.pipeline.publish.run`) and the continuous
worker (:mod:`ehub.feed_worker`) may run side by side, so a ``sending`` feed
row could belong to a live publisher. The lease is held while publishing — a
PostgreSQL session advisory lock, on SQLite an exclusive lock on a file beside
the database (a thread lock for an in-memory database) — which makes any
``sending`` row found by the lease holder a dead publisher's, and no row is
claimed twice. The lease dies with its process (``kill -9`` included). A
holder may hand the work to processes of its own (the publish shards): they
publish under its lease, which it keeps until they are done.

Must not read or write feed rows.
"""

from __future__ import annotations

import fcntl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError

from ehub.errors import StoreError, StoreUnavailable, Transient
from ehub.store.db import Store

LEASE_WAIT_S = 600.0
_LEASE_KEY = 0x65687570  # "ehup": the publish lease (the audit chain's lock is "ehub")
_SQLITE_LOCKS: dict[str, threading.Lock] = {}


class PublishLeaseBusy(StoreError, Transient):
    """Another publisher held the publish lease for longer than the wait allowed."""


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
