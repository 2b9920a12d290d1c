"""What each platform receives for each kind of outbox row (the contracts in ``schemas/``).

- ``provincial`` / ``license``: the license with its seal data (QZ) and the
  sealed PDF itself (``/api/v1/licenses/batch``);
- ``national`` / ``license``: the catalog entry — the same license data and the
  PDF's hash and size, not its content (``/api/v1/catalog/batch``);
- ``case`` (both): the case record version (``/api/v1/cases/batch``);
- ``national`` / ``seal``: the seal's registration (备案) document
  (``/api/v1/seals/batch``); the receipt's ``registration_no`` is recorded on the seal.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ehub.errors import StoreError
from ehub.seal_registration import export_registration
from ehub.store.db import json_text, loads_json
from ehub.store.models import CaseRow, LicenseRow, SealRow, SignatureRow


@dataclass(frozen=True, slots=True)
class Pending:
    """One outbox row to send."""

    id: int
    kind: str
    record_id: int
    subject: str
    version: int
    idempotency_key: str


@dataclass(frozen=True, slots=True)
class Channel:
    """One kind of record sent to one destination's batch endpoint."""

    kind: str
    endpoint: str
    max_batch: int
    build: Callable[[Session, Sequence[Pending]], list[dict[str, Any]]]


def _iso_utc(value: datetime) -> str:
    """ISO-8601 in UTC (SQLite returns naive datetimes for UTC columns)."""
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def _licenses(s: Session, todo: Sequence[Pending]) -> dict[int, tuple[Any, ...]]:
    rows = s.execute(
        select(LicenseRow.id, LicenseRow.document, SignatureRow.path, SignatureRow.sha256,
               SignatureRow.signed_at, SealRow.department, SealRow.name)
        .join(SignatureRow, (SignatureRow.license_id == LicenseRow.id)
              & (SignatureRow.format == "pades"))
        .join(SealRow, SealRow.id == SignatureRow.seal_id)
        .where(LicenseRow.id.in_([p.record_id for p in todo]))
    ).all()  # fmt: skip
    return {r[0]: tuple(r[1:]) for r in rows}


def _license_items(
    s: Session, todo: Sequence[Pending], document: Callable[[Pending, str, str], dict[str, Any]]
) -> list[dict[str, Any]]:
    """License items: the license data with its seal data (QZ) and ``document(p, path, sha)``."""
    found = _licenses(s, todo)
    items = []
    for p in todo:
        doc, path, sha, signed_at, sealer, seal_name = found[p.record_id]
        lic = dict(doc)
        lic["QZ"] = [{"ZZQZR": sealer, "ZZQZSJ": _iso_utc(signed_at), "ZZQZMC": seal_name}]
        items.append({"idempotency_key": p.idempotency_key, "license": lic,
                      "document": document(p, path, sha)})  # fmt: skip
    return items


def _content(p: Pending, path: str, sha: str) -> dict[str, Any]:
    data = Path(path).read_bytes()
    if hashlib.sha256(data).hexdigest() != sha:
        raise StoreError(
            f"sealed document of {p.subject} v{p.version} at {path} does not match its "
            "recorded hash; re-seal it before delivery"
        )
    return {"format": "pdf", "sha256": sha, "content_b64": base64.b64encode(data).decode()}


def _reference(p: Pending, path: str, sha: str) -> dict[str, Any]:
    try:
        size = Path(path).stat().st_size
    except OSError as exc:
        raise StoreError(
            f"sealed document of {p.subject} v{p.version} is missing at {path}: {exc}"
        ) from exc
    return {"format": "pdf", "sha256": sha, "size": size}


def license_with_document(s: Session, todo: Sequence[Pending]) -> list[dict[str, Any]]:
    """Provincial: license data and the sealed PDF (its hash checked before sending)."""
    return _license_items(s, todo, _content)


def catalog_entry(s: Session, todo: Sequence[Pending]) -> list[dict[str, Any]]:
    """National: the catalog entry, license data and the sealed PDF's hash and size."""
    return _license_items(s, todo, _reference)


def case_record(s: Session, todo: Sequence[Pending]) -> list[dict[str, Any]]:
    """The case record versions (their stored JSON decoded by msgspec, not row by row
    through the JSON type)."""
    found: dict[int, dict[str, Any]] = {
        cid: loads_json(doc)
        for cid, doc in s.execute(
            select(CaseRow.id, json_text(CaseRow.document)).where(
                CaseRow.id.in_([p.record_id for p in todo])
            )
        )
    }
    return [{"idempotency_key": p.idempotency_key, "case": found[p.record_id]} for p in todo]


def seal_registration(s: Session, todo: Sequence[Pending]) -> list[dict[str, Any]]:
    from ehub.seals import Seal

    found = {
        row.id: row
        for row in s.scalars(select(SealRow).where(SealRow.id.in_([p.record_id for p in todo])))
    }
    return [
        {
            "idempotency_key": p.idempotency_key,
            "registration": export_registration(Seal.from_row(found[p.record_id])),
        }
        for p in todo
    ]


CHANNELS: dict[str, tuple[Channel, ...]] = {
    "provincial": (
        Channel("license", "/api/v1/licenses/batch", 100, license_with_document),
        Channel("case", "/api/v1/cases/batch", 500, case_record),
    ),
    "national": (
        # Seals first: the catalog entries of a run name seals registered before them.
        Channel("seal", "/api/v1/seals/batch", 100, seal_registration),
        Channel("license", "/api/v1/catalog/batch", 500, catalog_entry),
        Channel("case", "/api/v1/cases/batch", 500, case_record),
    ),
}
