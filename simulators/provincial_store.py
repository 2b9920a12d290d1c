"""Durable state of the provincial platform simulator: one SQLite file in its state dir.

Thread-safe: a single connection guarded by a lock (FastAPI runs sync work in a
thread pool). Every accepted license version is one row keyed by
(identifier, version), carrying the idempotency key and receipt that accepted
it; counters survive restarts. Deleting a version also forgets its
idempotency key, so a re-send after reconciliation is stored again.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS licenses (
    identifier TEXT NOT NULL,
    version INTEGER NOT NULL,
    receipt_id TEXT NOT NULL UNIQUE,
    idempotency_key TEXT NOT NULL UNIQUE,
    fingerprint TEXT NOT NULL,
    license_json TEXT NOT NULL,
    document_sha256 TEXT NOT NULL,
    document_size INTEGER NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (identifier, version)
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class StoredVersion:
    """One accepted license version as the platform holds it."""

    identifier: str
    version: int
    receipt_id: str
    idempotency_key: str
    fingerprint: str
    received_at: str


class Tx:
    """Operations inside one locked transaction (see :meth:`ProvincialStore.transaction`)."""

    def __init__(self, cur: sqlite3.Cursor) -> None:
        self._cur = cur

    def _one(self, where: str, args: tuple[Any, ...]) -> StoredVersion | None:
        row = self._cur.execute(
            "SELECT identifier, version, receipt_id, idempotency_key, fingerprint, received_at"
            f" FROM licenses WHERE {where}",
            args,
        ).fetchone()
        return StoredVersion(*row) if row else None

    def by_key(self, idempotency_key: str) -> StoredVersion | None:
        return self._one("idempotency_key = ?", (idempotency_key,))

    def by_version(self, identifier: str, version: int) -> StoredVersion | None:
        return self._one("identifier = ? AND version = ?", (identifier, version))

    def insert(
        self,
        stored: StoredVersion,
        *,
        license_json: str,
        document_sha256: str,
        document_size: int,
    ) -> None:
        self._cur.execute(
            "INSERT INTO licenses (identifier, version, receipt_id, idempotency_key, fingerprint,"
            " license_json, document_sha256, document_size, received_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                stored.identifier,
                stored.version,
                stored.receipt_id,
                stored.idempotency_key,
                stored.fingerprint,
                license_json,
                document_sha256,
                document_size,
                stored.received_at,
            ),
        )

    def delete(self, identifier: str, version: int) -> bool:
        self._cur.execute(
            "DELETE FROM licenses WHERE identifier = ? AND version = ?", (identifier, version)
        )
        return self._cur.rowcount > 0

    def bump(self, name: str, by: int = 1) -> None:
        if by:
            self._cur.execute(
                "INSERT INTO counters (name, value) VALUES (?, ?)"
                " ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                (name, by),
            )


class ProvincialStore:
    """The simulator's SQLite database (``<state_dir>/provincial.sqlite3``)."""

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.path = state_dir / "provincial.sqlite3"
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """Hold the lock and one write transaction; commit on success, roll back on error."""
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield Tx(cur)
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")

    def bump(self, name: str, by: int = 1) -> None:
        with self.transaction() as tx:
            tx.bump(name, by)

    def stats(self) -> dict[str, int]:
        with self._lock:
            counters = dict(self._conn.execute("SELECT name, value FROM counters").fetchall())
            licenses, versions = self._conn.execute(
                "SELECT COUNT(DISTINCT identifier), COUNT(*) FROM licenses"
            ).fetchone()
        out = {
            name: int(counters.get(name, 0))
            for name in (
                "requests",
                "items",
                "accepted",
                "rejected",
                "duplicates",
                "unauthorized",
                "rate_limited",
                "faults",
            )
        }
        return {"licenses": int(licenses), "versions": int(versions), **out}

    def list_versions(self, *, limit: int | None, offset: int) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT identifier, version, receipt_id, received_at FROM licenses"
                " ORDER BY identifier, version LIMIT ? OFFSET ?",
                (-1 if limit is None else limit, offset),
            ).fetchall()
        keys = ("identifier", "version", "receipt_id", "received_at")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def received_between(self, start: str, end: str) -> list[dict[str, Any]]:
        """Versions received in [start, end) (ISO-8601 UTC instants, as stored)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT identifier, version, receipt_id FROM licenses"
                " WHERE received_at >= ? AND received_at < ? ORDER BY identifier, version",
                (start, end),
            ).fetchall()
        keys = ("identifier", "version", "receipt_id")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def versions_of(self, identifier: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT version, receipt_id, received_at, license_json, document_sha256,"
                " document_size FROM licenses WHERE identifier = ? ORDER BY version",
                (identifier,),
            ).fetchall()
        keys = ("version", "receipt_id", "received_at", "license", "document_sha256", "size")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def delete(self, identifier: str, version: int) -> bool:
        with self.transaction() as tx:
            return tx.delete(identifier, version)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
