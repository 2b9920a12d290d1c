"""Counts of the journey computed from the hub store (never hard-coded)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from ehub.store.db import Store
from ehub.store.models import (
    DeliveryRow,
    FeedMessageRow,
    LicenseRow,
    QuarantineRow,
    RawRecord,
    SignatureRow,
)


def journey_counts(store: Store) -> dict[str, Any]:
    with store.session() as s:

        def count(stmt: Any) -> int:
            return int(s.scalar(stmt) or 0)

        raw_states = dict(
            s.execute(select(RawRecord.state, func.count()).group_by(RawRecord.state)).all()
        )
        by_reason = dict(
            s.execute(
                select(
                    QuarantineRow.reason_code, func.count(func.distinct(QuarantineRow.raw_id))
                ).group_by(QuarantineRow.reason_code)
            ).all()
        )
        delivered = dict(
            s.execute(
                select(DeliveryRow.destination, func.count())
                .where(DeliveryRow.state == "delivered")
                .group_by(DeliveryRow.destination)
            ).all()
        )
        return {
            "extracted": sum(raw_states.values()),
            "normalized": int(raw_states.get("normalized", 0)),
            "quarantined": int(raw_states.get("quarantined", 0)),
            "pending": int(raw_states.get("pending", 0)),
            "quarantined_by_reason": {k: int(v) for k, v in sorted(by_reason.items())},
            "license_versions": count(select(func.count()).select_from(LicenseRow)),
            "sealed": count(select(func.count()).select_from(SignatureRow)),
            "delivered": {k: int(v) for k, v in sorted(delivered.items())},
            "delivery_rejected": count(
                select(func.count()).select_from(DeliveryRow).where(DeliveryRow.state == "rejected")
            ),
            "returned": count(
                select(func.count())
                .select_from(FeedMessageRow)
                .where(FeedMessageRow.state == "published")
            ),
            "return_topics": count(select(func.count(func.distinct(FeedMessageRow.topic)))),
        }
