"""License status changes made at the hub: revocation (吊销) and cancellation (注销).

A department normally revokes a license in its own system and the hub picks the
change up as a new version at the next ingest. When the change is made at the
hub instead (``ehub license revoke``), it is recorded the same way: a new
version of the license with the new status, in one transaction with its audit
event (who, why). The new version is ``normalized``, so the seal stage seals it
and the delivery and return-feed stages carry it like any other version; the
verification endpoint reports the newest version, hence "revoked".

Revoked and cancelled are final: a license cannot change status again (it is
re-issued under a new identifier), the same rule the normalize stage applies.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from ehub.audit import Event, append
from ehub.errors import HubError, Terminal
from ehub.pipeline.normalize import version_row
from ehub.records import LicenseStatus, Lineage, license_content_hash, license_from_json
from ehub.store.db import Store
from ehub.store.models import LicenseRow

FINAL = frozenset({LicenseStatus.REVOKED, LicenseStatus.CANCELLED})


class LicenseChangeError(HubError, Terminal):
    """A status change that cannot be made (unknown license, final status, no reason)."""


@dataclass(frozen=True, slots=True)
class StatusChange:
    identifier: str
    old_version: int
    new_version: int
    old_status: str
    new_status: str
    reason: str
    actor: str


def change_status(
    store: Store, identifier: str, status: LicenseStatus, *, reason: str, actor: str
) -> StatusChange:
    """Record ``status`` as a new version of the newest version of ``identifier``."""
    if status not in FINAL:
        raise LicenseChangeError(f"only revoked or cancelled can be set at the hub, not {status}")
    if not reason.strip():
        raise LicenseChangeError("a status change needs a reason (it is audited and reported)")
    with store.session() as s:
        row = s.scalar(
            select(LicenseRow)
            .where(LicenseRow.identifier == identifier)
            .order_by(LicenseRow.version.desc())
            .limit(1)
            .with_for_update()
        )
        if row is None:
            raise LicenseChangeError(f"license {identifier}: not in the hub store")
        old = license_from_json(row.document)
        if old.status in FINAL:
            raise LicenseChangeError(
                f"license {identifier} version {row.version} is already {old.status.value}: "
                "a revoked or cancelled license cannot change status (re-issue it instead)"
            )
        new_version = row.version + 1
        lineage = Lineage(old.lineage.source, old.lineage.source_key, f"hub:{actor}", "")
        new = dataclasses.replace(old, status=status, version=new_version, lineage=lineage)
        lineage = dataclasses.replace(lineage, content_hash=license_content_hash(new))
        new = dataclasses.replace(new, lineage=lineage)
        s.add(LicenseRow(**version_row(new, row.source_id, None)))
        change = StatusChange(
            identifier, row.version, new_version, old.status.value, status.value, reason, actor
        )
        append(s, [Event("status_changed", identifier, new_version, dataclasses.asdict(change))])
    return change


def history(store: Store, identifier: str) -> list[dict[str, Any]]:
    """Every version of ``identifier``: version, status, state, source version, created."""
    with store.session() as s:
        rows = s.execute(
            select(
                LicenseRow.version,
                LicenseRow.status,
                LicenseRow.state,
                LicenseRow.state_reason,
                LicenseRow.document,
                LicenseRow.created_at,
            )
            .where(LicenseRow.identifier == identifier)
            .order_by(LicenseRow.version)
        ).all()
    return [
        {
            "version": v,
            "status": st,
            "state": state,
            "state_reason": why or "",
            "source_version": (doc.get("lineage") or {}).get("source_version", ""),
            "created_at": at.isoformat(),
        }
        for v, st, state, why, doc, at in rows
    ]


def newest_status(store: Store, identifier: str) -> str | None:
    """Status of the newest version of ``identifier`` (None: not in the store)."""
    with store.session() as s:
        return s.scalar(
            select(LicenseRow.status)
            .where(LicenseRow.identifier == identifier)
            .order_by(LicenseRow.version.desc())
            .limit(1)
        )
