"""Durable state of a platform simulator: one SQLite file in its state dir.

Thread-safe: a single connection guarded by a lock (FastAPI runs sync work in a
thread pool). Every accepted version of every kind (license, case, seal) is one
row of ``records`` keyed by (kind, identifier, version), carrying the
idempotency key and receipt that accepted it, the identity CONFLICT is decided
on, and a ``seq`` that only grows (the return interface's cursor). Idempotency
keys are scoped per kind (per batch endpoint). Counters survive restarts.
Deleting a version also forgets its idempotency key, so a re-send after
reconciliation is stored again.

A state dir written before the kinds existed (a ``licenses`` table) is migrated
on open.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    identifier TEXT NOT NULL,
    version INTEGER NOT NULL,
    identity TEXT NOT NULL,
    receipt_id TEXT NOT NULL UNIQUE,
    idempotency_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    payload_json TEXT NOT NULL,
    extra_json TEXT NOT NULL DEFAULT '{}',
    division TEXT NOT NULL DEFAULT '',
    received_at TEXT NOT NULL,
    UNIQUE (kind, identifier, version),
    UNIQUE (kind, identity),
    UNIQUE (kind, idempotency_key)
);
CREATE INDEX IF NOT EXISTS records_received ON records (kind, received_at);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
_MIGRATE_LICENSES = """
INSERT INTO records (kind, identifier, version, identity, receipt_id, idempotency_key,
    fingerprint, payload_json, extra_json, division, received_at)
SELECT 'license', identifier, version, identifier || '|' || version, receipt_id,
    idempotency_key, fingerprint, license_json,
    json_object('document_sha256', document_sha256, 'document_size', document_size),
    COALESCE(json_extract(license_json, '$.CZZTQHDM'), ''), received_at
FROM licenses ORDER BY received_at;
DROP TABLE licenses;
"""
COUNTERS = (
    "requests",
    "items",
    "accepted",
    "rejected",
    "duplicates",
    "unauthorized",
    "rate_limited",
    "faults",
)
_COLUMNS = "identifier, version, receipt_id, idempotency_key, fingerprint, received_at, extra_json"


@dataclass(frozen=True, slots=True)
class StoredVersion:
    """One accepted version as the platform holds it."""

    identifier: str
    version: int
    receipt_id: str
    idempotency_key: str
    fingerprint: str
    received_at: str
    extra: dict[str, Any] = field(default_factory=dict)


def _stored(row: Any) -> StoredVersion | None:
    if not row:
        return None
    identifier, version, receipt_id, key, fingerprint, received_at, extra = row
    return StoredVersion(
        identifier, version, receipt_id, key, fingerprint, received_at, json.loads(extra)
    )


class Tx:
    """Operations inside one locked transaction (see :meth:`PlatformStore.transaction`)."""

    def __init__(self, cur: sqlite3.Cursor) -> None:
        self._cur = cur

    def _one(self, where: str, args: tuple[Any, ...]) -> StoredVersion | None:
        sql = f"SELECT {_COLUMNS} FROM records WHERE {where}"
        return _stored(self._cur.execute(sql, args).fetchone())

    def by_key(self, kind: str, idempotency_key: str) -> StoredVersion | None:
        return self._one("kind = ? AND idempotency_key = ?", (kind, idempotency_key))

    def by_identity(self, kind: str, identity: str) -> StoredVersion | None:
        return self._one("kind = ? AND identity = ?", (kind, identity))

    def by_keys(self, kind: str, keys: Sequence[str]) -> dict[str, StoredVersion]:
        """The versions accepted under any of ``keys``, by key."""
        return self._many("idempotency_key", kind, keys)

    def by_identities(self, kind: str, identities: Sequence[str]) -> dict[str, StoredVersion]:
        """The versions held with any of ``identities``, by identity."""
        return self._many("identity", kind, identities)

    def _many(self, column: str, kind: str, values: Sequence[str]) -> dict[str, StoredVersion]:
        found: dict[str, StoredVersion] = {}
        unique = list(dict.fromkeys(values))
        for start in range(0, len(unique), 500):  # well under SQLite's variable limit
            chunk = unique[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            sql = (f"SELECT {column}, {_COLUMNS} FROM records WHERE kind = ?"
                   f" AND {column} IN ({marks})")  # fmt: skip
            for value, *row in self._cur.execute(sql, (kind, *chunk)):
                hit = _stored(row)
                assert hit is not None
                found[value] = hit
        return found

    def by_version(self, kind: str, identifier: str, version: int) -> StoredVersion | None:
        return self._one("kind = ? AND identifier = ? AND version = ?", (kind, identifier, version))

    def next_version(self, kind: str, identifier: str) -> int:
        row = self._cur.execute(
            "SELECT MAX(version) FROM records WHERE kind = ? AND identifier = ?", (kind, identifier)
        ).fetchone()
        return int(row[0] or 0) + 1

    def insert(
        self, kind: str, stored: StoredVersion, *, identity: str, payload_json: str, division: str
    ) -> None:
        self._cur.execute(
            "INSERT INTO records (kind, identifier, version, identity, receipt_id,"
            " idempotency_key, fingerprint, payload_json, extra_json, division, received_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                kind,
                stored.identifier,
                stored.version,
                identity,
                stored.receipt_id,
                stored.idempotency_key,
                stored.fingerprint,
                payload_json,
                json.dumps(stored.extra, ensure_ascii=False, sort_keys=True),
                division,
                stored.received_at,
            ),
        )

    def delete(self, kind: str, identifier: str, version: int) -> bool:
        self._cur.execute(
            "DELETE FROM records WHERE kind = ? AND identifier = ? AND version = ?",
            (kind, identifier, version),
        )
        return self._cur.rowcount > 0

    def bump(self, name: str, by: int = 1) -> None:
        if by:
            self._cur.execute(
                "INSERT INTO counters (name, value) VALUES (?, ?)"
                " ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                (name, by),
            )


class PlatformStore:
    """The simulator's SQLite database (``<state_dir>/<filename>``)."""

    def __init__(self, state_dir: Path, filename: str) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.path = state_dir / filename
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)
        legacy = self._conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'licenses'"
        ).fetchone()
        if legacy:
            self._conn.executescript(f"BEGIN IMMEDIATE; {_MIGRATE_LICENSES} COMMIT;")

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

    def _rows(self, sql: str, args: Sequence[Any], keys: Sequence[str]) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute(sql, tuple(args)).fetchall()
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def stats(self, kinds: Sequence[str]) -> dict[str, Any]:
        """Global counters, plus per kind: identifiers and versions held and its own counters."""
        with self._lock:
            counters = dict(self._conn.execute("SELECT name, value FROM counters").fetchall())
            held = {
                kind: (int(n_ids), int(n_versions))
                for kind, n_ids, n_versions in self._conn.execute(
                    "SELECT kind, COUNT(DISTINCT identifier), COUNT(*) FROM records GROUP BY kind"
                )
            }
        per_kind = {
            kind: {
                "identifiers": held.get(kind, (0, 0))[0],
                "versions": held.get(kind, (0, 0))[1],
                **{
                    name: int(counters.get(f"{kind}.{name}", 0))
                    for name in ("items", "accepted", "rejected", "duplicates")
                },
            }
            for kind in kinds
        }
        return {
            **{name: int(counters.get(name, 0)) for name in COUNTERS},
            "kinds": per_kind,
        }

    def list_versions(self, kind: str, *, limit: int | None, offset: int) -> list[dict[str, Any]]:
        return self._rows(
            "SELECT identifier, version, receipt_id, received_at FROM records WHERE kind = ?"
            " ORDER BY identifier, version LIMIT ? OFFSET ?",
            (kind, -1 if limit is None else limit, offset),
            ("identifier", "version", "receipt_id", "received_at"),
        )

    def received_between(self, kind: str, start: str, end: str) -> list[dict[str, Any]]:
        """Versions of ``kind`` received in [start, end) (ISO-8601 UTC instants, as stored)."""
        return self._rows(
            "SELECT identifier, version, receipt_id, received_at FROM records WHERE kind = ?"
            " AND received_at >= ? AND received_at < ? ORDER BY identifier, version",
            (kind, start, end),
            ("identifier", "version", "receipt_id", "received_at"),
        )

    def versions_of(self, kind: str, identifier: str) -> list[dict[str, Any]]:
        """Every version held of one identifier: payload and extra decoded."""
        rows = self._rows(
            "SELECT version, receipt_id, received_at, payload_json, extra_json FROM records"
            " WHERE kind = ? AND identifier = ? ORDER BY version",
            (kind, identifier),
            ("version", "receipt_id", "received_at", "payload", "extra"),
        )
        for row in rows:
            row["payload"], row["extra"] = json.loads(row["payload"]), json.loads(row["extra"])
        return rows

    def feed(
        self, kinds: Sequence[str], division_prefix: str, *, after: int, limit: int
    ) -> list[dict[str, Any]]:
        """Versions of ``kinds`` whose division starts with the prefix, after cursor ``after``."""
        marks = ", ".join("?" for _ in kinds)
        rows = self._rows(
            "SELECT seq, kind, identifier, version, receipt_id, received_at, division,"
            f" payload_json FROM records WHERE kind IN ({marks}) AND seq > ?"
            " AND substr(division, 1, ?) = ? ORDER BY seq LIMIT ?",
            (*kinds, after, len(division_prefix), division_prefix, limit),
            ("cursor", "kind", "identifier", "version", "receipt_id", "received_at", "division",
             "record"),
        )  # fmt: skip
        for row in rows:
            row["record"] = json.loads(row["record"])
        return rows

    def delete(self, kind: str, identifier: str, version: int) -> bool:
        with self.transaction() as tx:
            return tx.delete(kind, identifier, version)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
