"""Operations indicators of delivery and the return feeds, for the dashboard and the API.

Per platform: outbox rows by state, the share delivered and the latency from the
outbox row to the stored receipt; the newest reconciliation outcomes; per office,
the return feed's published and waiting messages and lag. Read-only queries over a
:class:`~ehub.store.db.Store`, like :mod:`ehub.indicators` (whose filters they take).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from ehub.indicators import Filters, _aware
from ehub.store.db import Store
from ehub.store.models import AuditEvent, DeliveryRow, OfficeRow

__all__ = [
    "OfficeLag", "PlatformStats", "ReconciliationStats", "feed_lag", "platforms",
    "reconciliations",
]  # fmt: skip


@dataclass(frozen=True, slots=True)
class PlatformStats:
    destination: str
    total: int
    delivered: int
    pending: int
    rejected: int
    dead: int
    p50_latency_s: float | None
    p95_latency_s: float | None
    """Outbox row written → receipt stored, over the newest ``window`` deliveries."""

    @property
    def delivered_share(self) -> float | None:
        return self.delivered / self.total if self.total else None


@dataclass(frozen=True, slots=True)
class ReconciliationStats:
    at: datetime
    day: str
    destination: str
    kind: str
    hub_count: int
    platform_count: int
    missing: int
    unknown_to_hub: int
    matched: bool


@dataclass(frozen=True, slots=True)
class OfficeLag:
    office: str
    name: str
    published: int
    pending: int
    oldest_pending_s: float | None
    p95_lag_s: float | None


def platforms(store: Store, f: Filters | None = None, *, window: int = 5000) -> list[PlatformStats]:
    """Per platform: outbox rows by state, the share delivered, and the latency from
    the outbox row (written with the record) to the stored receipt."""
    f = f or Filters()
    from ehub.on_demand import percentile  # (it imports the signing package)

    out = []
    with store.session() as s:
        stmt = select(DeliveryRow.destination, DeliveryRow.state, func.count()).group_by(
            DeliveryRow.destination, DeliveryRow.state
        )
        if f.since is not None:
            stmt = stmt.where(DeliveryRow.created_at >= f.since)
        states: dict[str, dict[str, int]] = {}
        for dest, state, n in s.execute(stmt):
            states.setdefault(str(dest), {})[str(state)] = int(n)
        for dest in sorted(states):
            lat = select(DeliveryRow.created_at, DeliveryRow.delivered_at).where(
                DeliveryRow.destination == dest, DeliveryRow.state == "delivered",
                DeliveryRow.delivered_at.is_not(None),
            )  # fmt: skip
            if f.since is not None:
                lat = lat.where(DeliveryRow.created_at >= f.since)
            lags = [
                max((_aware(done) - _aware(made)).total_seconds(), 0.0)
                for made, done in s.execute(lat.order_by(DeliveryRow.id.desc()).limit(window))
                if done is not None
            ]
            c = states[dest]
            out.append(PlatformStats(dest, sum(c.values()), c.get("delivered", 0),
                                     c.get("pending", 0), c.get("rejected", 0), c.get("dead", 0),
                                     percentile(lags, 50), percentile(lags, 95)))  # fmt: skip
    return out


def reconciliations(store: Store, *, limit: int = 90) -> list[ReconciliationStats]:
    """The newest ``limit`` reconciliation outcomes (audit events ``reconciled``), oldest first."""
    stmt = (
        select(AuditEvent.at, AuditEvent.detail)
        .where(AuditEvent.event == "reconciled")
        .order_by(AuditEvent.id.desc())
        .limit(limit)
    )
    with store.session() as s:
        rows = s.execute(stmt).all()
    out = []
    for at, detail in reversed(rows):
        d = dict(detail or {})
        out.append(ReconciliationStats(
            _aware(at), str(d.get("day", "")), str(d.get("destination", "")),
            str(d.get("kind", "license")), int(d.get("hub_count") or 0),
            int(d.get("platform_count") or 0), _n(d.get("missing")),
            _n(d.get("unknown_to_hub")), bool(d.get("matched")),
        ))  # fmt: skip
    return out


def _n(value: Any) -> int:
    """A count recorded as a number or as the list it counts."""
    if isinstance(value, (list, tuple)):
        return len(value)
    return int(value or 0)


def feed_lag(store: Store) -> list[OfficeLag]:
    """Per office: return-feed messages published and waiting, the oldest wait and the
    p95 commit-to-publication lag (:func:`ehub.office_feed.freshness`)."""
    from ehub.office_feed import freshness

    with store.session() as s:
        names = {str(c): str(n) for c, n in s.execute(select(OfficeRow.code, OfficeRow.name))}
    return [
        OfficeLag(fr.office, names.get(fr.office, fr.office), fr.published, fr.pending,
                  fr.oldest_pending_s, fr.p95_lag_s)
        for fr in freshness(store)
    ]  # fmt: skip
