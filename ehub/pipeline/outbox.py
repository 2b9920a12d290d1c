"""Delivery outbox rows: one per (record version, destination), written with the record.

Which destination receives which kind of record:

- ``license`` — the provincial platform (license with its sealed PDF) and the
  national platform (catalog entry: metadata and the document's hash); the rows
  are written by the seal stage in the transaction that records the seal;
- ``case`` — both platforms; written by the normalize stage in the transaction
  that stores the case record version;
- ``seal`` — the national platform (seal registration, 备案); written in the
  transaction that registers the seal.

Every row carries its idempotency key, derived from destination, kind, record
and version, so it is the same on every retry of every worker.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import select, tuple_

from ehub.store.db import insert_ignore, insert_ignore_returning, json_text, loads_json, utcnow
from ehub.store.models import CaseRow, DeliveryRow

DESTINATIONS: dict[str, tuple[str, ...]] = {
    "license": ("provincial", "national"),
    "case": ("provincial", "national"),
    "seal": ("national",),
}
KINDS = tuple(DESTINATIONS)
ALL_DESTINATIONS = ("provincial", "national")


def idempotency_key(destination: str, identifier: str, version: int, kind: str = "license") -> str:
    """Stable key of one record version at one destination (same on every retry).

    License keys keep their original form (``destination|identifier|version``)
    so rows written before case and seal deliveries existed keep their keys.
    """
    text = (
        f"{destination}|{identifier}|{version}"
        if kind == "license"
        else f"{destination}|{kind}|{identifier}|{version}"
    )
    return hashlib.sha256(text.encode()).hexdigest()[:48]


def row(kind: str, destination: str, record_id: int, subject: str, version: int) -> dict[str, Any]:
    """One pending outbox row as a dict for a bulk insert."""
    return {
        "kind": kind,
        f"{kind}_id": record_id,
        "subject": subject,
        "version": version,
        "destination": destination,
        "idempotency_key": idempotency_key(destination, subject, version, kind),
        "state": "pending",
        "attempts": 0,
        "created_at": utcnow(),
    }


def rows_for(kind: str, record_id: int, subject: str, version: int) -> list[dict[str, Any]]:
    """The outbox rows of one record version, one per destination of its kind."""
    return [row(kind, d, record_id, subject, version) for d in DESTINATIONS[kind]]


def insert(s: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Insert outbox rows; a row already there (re-run after a crash) is left as it is."""
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_kind.setdefault(r["kind"], []).append(r)
    for kind, group in by_kind.items():
        # Bulk inserts need the same columns in every row: fill the other kinds' ids.
        full = [{"license_id": None, "case_id": None, "seal_id": None, **r} for r in group]
        insert_ignore(s, DeliveryRow.__table__, full, [f"{kind}_id", "destination"])


def store_case_versions(s: Any, rows: Sequence[dict[str, Any]]) -> list[tuple[int, str, int, Any]]:
    """Insert case record version rows (:func:`ehub.pipeline.normalize.version_row`) and
    the outbox rows of each; the stored versions as (id, case number, version, document).

    The ids of the rows inserted come back from the insert itself (``RETURNING``), with
    the documents in hand; only a version already in the store (a re-run) is read back.
    """
    inserted = insert_ignore_returning(
        s, CaseRow.__table__, rows, ["case_number", "version"],
        (CaseRow.id, CaseRow.case_number, CaseRow.version),
    )  # fmt: skip
    ids = {(number, ver): cid for cid, number, ver in inserted}
    found: list[tuple[int, str, int, Any]] = []
    present = []
    for r in rows:
        cid = ids.get((r["case_number"], r["version"]))
        if cid is None:
            present.append((r["case_number"], r["version"]))
        else:
            found.append((cid, r["case_number"], r["version"], r["document"]))
    if present:
        found += _stored_cases(s, present)
    insert(s, [r for cid, number, ver, _doc in found for r in rows_for("case", cid, number, ver)])
    return found


def add_case_rows(s: Any, versions: Iterable[tuple[str, int]]) -> list[tuple[int, str, int, Any]]:
    """Outbox rows of newly stored case record versions (case number, version); the
    stored versions as (id, case number, version, document)."""
    pairs = list(versions)
    if not pairs:
        return []
    found = _stored_cases(s, pairs)
    insert(s, [r for cid, number, ver, _doc in found for r in rows_for("case", cid, number, ver)])
    return found


def _stored_cases(s: Any, pairs: list[tuple[str, int]]) -> list[tuple[int, str, int, Any]]:
    return [
        (cid, number, ver, loads_json(doc))
        for cid, number, ver, doc in s.execute(
            select(CaseRow.id, CaseRow.case_number, CaseRow.version,
                   json_text(CaseRow.document))
            .where(tuple_(CaseRow.case_number, CaseRow.version).in_(pairs))
        )
    ]  # fmt: skip
