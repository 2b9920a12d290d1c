"""Counts of the journey computed from the hub store (never hard-coded)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from ehub.store.db import Store
from ehub.store.models import (
    CaseRow,
    DeliveryRow,
    FeedMessageRow,
    LicenseRow,
    QuarantineRow,
    RawRecord,
    ReturnedRecord,
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
        delivered: dict[str, dict[str, int]] = {}
        outbox: dict[str, int] = {}
        for dest, kind, state, n in s.execute(
            select(DeliveryRow.destination, DeliveryRow.kind, DeliveryRow.state, func.count())
            .group_by(DeliveryRow.destination, DeliveryRow.kind, DeliveryRow.state)
            .order_by(DeliveryRow.destination, DeliveryRow.kind)
        ):
            outbox[state] = outbox.get(state, 0) + int(n)
            if state == "delivered":
                delivered.setdefault(dest, {})[kind] = int(n)
        per_source: dict[str, dict[str, Any]] = {}
        for src, state, n in s.execute(
            select(RawRecord.source_id, RawRecord.state, func.count()).group_by(
                RawRecord.source_id, RawRecord.state
            )
        ):
            entry = per_source.setdefault(
                src, {"extracted": 0, "normalized": 0, "quarantined": 0, "by_reason": {}}
            )
            entry["extracted"] += int(n)
            if state in ("normalized", "quarantined"):
                entry[state] += int(n)
        for src, reason, n in s.execute(
            select(
                QuarantineRow.source_id,
                QuarantineRow.reason_code,
                func.count(func.distinct(QuarantineRow.raw_id)),
            ).group_by(QuarantineRow.source_id, QuarantineRow.reason_code)
        ):
            per_source.setdefault(src, {"by_reason": {}})["by_reason"][reason] = int(n)
        for entry in per_source.values():
            entry["by_reason"] = dict(sorted(entry["by_reason"].items()))
        return {
            "sources": dict(sorted(per_source.items())),
            "case_versions": count(select(func.count()).select_from(CaseRow)),
            "extracted": sum(raw_states.values()),
            "normalized": int(raw_states.get("normalized", 0)),
            "quarantined": int(raw_states.get("quarantined", 0)),
            "pending": int(raw_states.get("pending", 0)),
            "quarantined_by_reason": {k: int(v) for k, v in sorted(by_reason.items())},
            "license_versions": count(select(func.count()).select_from(LicenseRow)),
            "sealed": count(
                select(func.count()).select_from(SignatureRow).where(SignatureRow.format == "pades")
            ),
            "sealed_ofd": count(
                select(func.count()).select_from(SignatureRow).where(SignatureRow.format == "ofd")
            ),
            "sealed_by_level": {
                str(k): int(v)
                for k, v in s.execute(
                    select(SignatureRow.level, func.count())
                    .where(SignatureRow.format == "pades")
                    .group_by(SignatureRow.level)
                    .order_by(SignatureRow.level)
                )
            },
            "held": count(
                select(func.count()).select_from(LicenseRow).where(LicenseRow.state == "held")
            ),
            "delivered": delivered,
            "deliveries_by_state": outbox,
            "delivery_rejected": count(
                select(func.count()).select_from(DeliveryRow).where(DeliveryRow.state == "rejected")
            ),
            "returned": count(
                select(func.count())
                .select_from(FeedMessageRow)
                .where(FeedMessageRow.state == "published")
            ),
            "return_topics": count(select(func.count(func.distinct(FeedMessageRow.topic)))),
            "returned_from_province": count(select(func.count()).select_from(ReturnedRecord)),
        }
