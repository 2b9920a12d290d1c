"""The housing simulator's dataset: one SQLite file of permit items and bureaus.

:func:`generate` writes the items of :mod:`simulators.housing_data` in batches
(memory stays flat for millions of items) into a temporary file and renames it
over ``db_path``, so a server reading the old file is never disturbed.
:class:`PermitStore` answers the API's keyset and offset page queries from
disk. Items are stored as their JSON text, served verbatim.

Tables: ``permits(id, updated_at, doc)`` indexed by ``(updated_at, id)``;
``orgs(org_id, doc)``; ``meta(key, value)`` holding the generation parameters
and the generator report. Never imports the hub.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import threading
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from simulators import defect_kit as kit
from simulators import housing_data as data
from simulators import market_data as vocab

GENERATOR_VERSION = 1
BATCH_SIZE = 5000

_SCHEMA = """
CREATE TABLE permits (id INTEGER PRIMARY KEY, updated_at TEXT NOT NULL, doc TEXT NOT NULL);
CREATE TABLE orgs (org_id TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def params_of(count: int, seed: int, defect_rate: float) -> dict[str, Any]:
    return {
        "generator": "housing",
        "version": GENERATOR_VERSION,
        "count": count,
        "seed": seed,
        "defect_rate": defect_rate,
    }


def generate(
    db_path: str | Path, count: int, seed: int = 0, defect_rate: float = 0.05
) -> kit.GeneratorReport:
    """(Re)create the dataset at ``db_path`` with ``count`` items; deterministic for a seed."""
    path = Path(db_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    kinds, originals = data.plan(count, defect_rate, seed)
    conn = sqlite3.connect(tmp, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=OFF")
        conn.execute("PRAGMA synchronous=OFF")
        conn.executescript(_SCHEMA)
        conn.execute("BEGIN")
        batch: list[tuple[int, str, str]] = []
        for item_id in range(1, count + 1):
            item = data.make_item(seed, item_id, kinds.get(item_id), originals.get(item_id))
            batch.append((item_id, item["updatedAt"], _dumps(item)))
            if len(batch) >= BATCH_SIZE:
                conn.executemany("INSERT INTO permits VALUES (?, ?, ?)", batch)
                batch.clear()
        conn.executemany("INSERT INTO permits VALUES (?, ?, ?)", batch)
        conn.executemany(
            "INSERT INTO orgs VALUES (?, ?)", [(o["orgId"], _dumps(o)) for o in data.orgs()]
        )
        report = kit.make_report(count, data.DEFECT_KINDS, ((k, i) for i, k in kinds.items()))
        conn.executemany(
            "INSERT INTO meta VALUES (?, ?)",
            [
                ("params", _dumps(params_of(count, seed, defect_rate))),
                ("report", _dumps(report.to_dict(include_keys=True))),
            ],
        )
        conn.execute("CREATE INDEX ix_permits_updated ON permits (updated_at, id)")
        conn.execute("COMMIT")
    finally:
        conn.close()
    os.replace(tmp, path)
    return report


def read_meta(db_path: str | Path, key: str) -> Any:
    """A meta value of an existing dataset (None when absent or not a dataset)."""
    path = Path(db_path)
    if not path.is_file():
        return None
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    except sqlite3.DatabaseError:
        return None
    finally:
        conn.close()
    return json.loads(row[0]) if row else None


def ensure(
    db_path: str | Path, count: int, seed: int = 0, defect_rate: float = 0.05
) -> tuple[kit.GeneratorReport, bool]:
    """The dataset for these parameters: reused when the file already holds it, else generated.

    Returns (report, generated?).
    """
    if read_meta(db_path, "params") == params_of(count, seed, defect_rate):
        stored = read_meta(db_path, "report")
        if stored is not None:
            return kit.GeneratorReport.from_dict(stored), False
    return generate(db_path, count, seed, defect_rate), True


def touch(db_path: str | Path, ids: Iterable[int], seed: int = 0) -> int:
    """Give items ``ids`` a new version (new project address, sometimes a new status).

    Their ``updatedAt`` moves past the current maximum, one second apart in id
    order, so an incremental reader sees exactly these items again (with the
    same ids). Injected defects stay as they are. Returns the number updated.
    """
    conn = sqlite3.connect(Path(db_path), isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        latest = conn.execute("SELECT MAX(updated_at) FROM permits").fetchone()[0]
        clock = datetime.strptime(latest, data.UPDATED_FMT) if latest else datetime(2024, 1, 1)
        updated = 0
        for item_id in sorted(set(ids)):
            row = conn.execute("SELECT doc FROM permits WHERE id = ?", (item_id,)).fetchone()
            if row is None:
                continue
            item = json.loads(row[0])
            rng = random.Random(f"housing-touch:{seed}:{item_id}")
            county = next(
                (c for c in vocab.COUNTIES if c.code == str(item.get("permitNo") or "")[:6]),
                vocab.COUNTIES[0],
            )
            item["projectAddress"] = (
                data.project_address(county, rng) + f"{rng.randint(1, 99)}号地块"
            )
            if item.get("status") == "VALID" and rng.random() < 0.2:
                item["status"] = "SUSPENDED"
            clock += timedelta(seconds=1)
            item["updatedAt"] = clock.strftime(data.UPDATED_FMT)
            conn.execute(
                "UPDATE permits SET updated_at = ?, doc = ? WHERE id = ?",
                (item["updatedAt"], _dumps(item), item_id),
            )
            updated += 1
        conn.execute("COMMIT")
    finally:
        conn.close()
    return updated


class PermitStore:
    """Read-only queries of a dataset; thread-safe (one connection behind a lock)."""

    def __init__(self, db_path: str | Path) -> None:
        path = Path(db_path)
        if read_meta(path, "params") is None:
            raise FileNotFoundError(
                f"{path} is not a housing dataset; create it with `python -m simulators housing"
                " --db PATH --count N` or simulators.housing_store.generate()"
            )
        self.path = path
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        self._totals: dict[str, int] = {}
        self._data_version = -1

    def params(self) -> dict[str, Any]:
        return dict(read_meta(self.path, "params") or {})

    def report(self) -> dict[str, Any] | None:
        stored = read_meta(self.path, "report")
        return dict(stored) if stored is not None else None

    def total(self, since: str | None) -> int:
        """Items with ``updated_at >= since`` (all when None); cached until the data changes."""
        key = since or ""
        with self._lock:
            version = self._conn.execute("PRAGMA data_version").fetchone()[0]
            if version != self._data_version:
                self._totals.clear()
                self._data_version = version
            if key not in self._totals:
                self._totals[key] = self._conn.execute(
                    "SELECT COUNT(*) FROM permits WHERE updated_at >= ?", (key,)
                ).fetchone()[0]
            return self._totals[key]

    def page(self, since: str | None, offset: int, limit: int) -> list[tuple[str, int, str]]:
        """Up to ``limit`` (updated_at, id, doc) rows in (updated_at, id) order, from ``offset``."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT updated_at, id, doc FROM permits WHERE updated_at >= ?"
                " ORDER BY updated_at, id LIMIT ? OFFSET ?",
                (since or "", limit, offset),
            ).fetchall()
        return [(str(u), int(i), str(d)) for u, i, d in rows]

    def after(
        self, since: str | None, position: tuple[str, int], limit: int
    ) -> list[tuple[str, int, str]]:
        """Up to ``limit`` rows strictly after ``position`` = (updated_at, id) (keyset)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT updated_at, id, doc FROM permits"
                " WHERE (updated_at, id) > (?, ?) AND updated_at >= ?"
                " ORDER BY updated_at, id LIMIT ?",
                (position[0], position[1], since or "", limit),
            ).fetchall()
        return [(str(u), int(i), str(d)) for u, i, d in rows]

    def item(self, item_id: int) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT doc FROM permits WHERE id = ?", (item_id,)).fetchone()
        return str(row[0]) if row else None

    def org(self, org_id: str) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT doc FROM orgs WHERE org_id = ?", (org_id,)).fetchone()
        return str(row[0]) if row else None

    def all_orgs(self) -> list[str]:
        with self._lock:
            return [str(r[0]) for r in self._conn.execute("SELECT doc FROM orgs ORDER BY org_id")]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
