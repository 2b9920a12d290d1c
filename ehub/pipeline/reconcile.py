"""Reconciliation with a platform: the hub's delivered set of a day against the platform's.

For one destination and one day (China Standard Time, the platforms' business
day), the hub's set is every delivery marked delivered that day; the
platform's is its reconciliation report (versions received that day). Both
sides are summarised as a count and an order-independent digest (SHA-256 of
the sorted ``identifier|version`` lines), so a matching day costs one request.
When they differ, each difference is checked on its own:

- **missing** — the hub holds a receipt, the platform does not hold the version
  (any day): the delivery is put back in the outbox with the same idempotency
  key (the platform forgot it, so it stores it again) unless ``redeliver`` is off;
- **straddling** — delivered near midnight, on the other side at the platform:
  not a difference;
- **unknown to the hub** — the platform holds a version the hub never had
  delivered there: flagged for the operators, never deleted by the hub.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

from sqlalchemy import select

from connectors.platform import ProvincialClient
from ehub.audit import Event, append
from ehub.config import Settings
from ehub.pipeline import StageResult
from ehub.store.db import Store
from ehub.store.models import DeliveryRow

log = logging.getLogger(__name__)

CST = timezone(timedelta(hours=8))


def version_digest(pairs: Iterable[tuple[str, int]]) -> str:
    """SHA-256 of the sorted ``identifier|version`` lines joined by newlines."""
    lines = sorted(f"{i}|{v}" for i, v in pairs)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


@dataclass(frozen=True)
class Reconciliation:
    destination: str
    day: str
    hub_count: int
    hub_digest: str
    platform_count: int
    platform_digest: str
    missing: list[tuple[str, int]] = field(default_factory=list)
    unknown_to_hub: list[tuple[str, int, str]] = field(default_factory=list)
    straddling: int = 0
    redelivered: int = 0
    kind: str = "license"

    @property
    def matched(self) -> bool:
        return self.hub_digest == self.platform_digest

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "matched": self.matched}


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(), tzinfo=CST)
    return start, start + timedelta(days=1)


def reconcile(
    store: Store,
    client: ProvincialClient,
    day: date,
    *,
    destination: str = "provincial",
    kind: str = "license",
    redeliver: bool = True,
) -> Reconciliation:
    # In UTC, as the store writes it: SQLite keeps datetimes as text without their offset,
    # so bounds in +08:00 would be compared with UTC wall times.
    start, end = (b.astimezone(UTC) for b in day_bounds(day))
    mine = (DeliveryRow.destination == destination, DeliveryRow.kind == kind,
            DeliveryRow.state == "delivered")  # fmt: skip
    with store.session() as s:
        hub = {
            (ident, ver): did
            for did, ident, ver in s.execute(
                select(DeliveryRow.id, DeliveryRow.subject, DeliveryRow.version)
                .where(*mine, DeliveryRow.delivered_at >= start, DeliveryRow.delivered_at < end)
            )
        }  # fmt: skip
    report = client.reconciliation(day.isoformat(), kind)
    platform = {(i, v): receipt for i, v, receipt in report.items}
    result = Reconciliation(
        destination,
        day.isoformat(),
        len(hub),
        version_digest(hub),
        report.count,
        report.digest,
        kind=kind,
    )
    if result.matched:
        _record(store, result, {})
        return result
    missing: list[tuple[str, int]] = []
    straddling = 0
    for ident, ver in sorted(set(hub) - set(platform)):
        if ver in client.held_versions(ident, kind):
            straddling += 1  # received on the platform's other side of midnight
        else:
            missing.append((ident, ver))
    unknown: list[tuple[str, int, str]] = []
    extra = sorted(set(platform) - set(hub))
    if extra:
        with store.session() as s:
            known = set(
                s.execute(
                    select(DeliveryRow.subject, DeliveryRow.version)
                    .where(*mine, DeliveryRow.subject.in_({i for i, _ in extra}))
                ).tuples()
            )  # fmt: skip
        unknown = [(i, v, platform[(i, v)]) for i, v in extra if (i, v) not in known]
    result = Reconciliation(
        destination, day.isoformat(), len(hub), result.hub_digest, report.count, report.digest,
        missing, unknown, straddling, len(missing) if redeliver else 0, kind,
    )  # fmt: skip
    _record(store, result, {k: hub[k] for k in missing} if redeliver else {})
    return result


def _record(store: Store, r: Reconciliation, requeue: dict[tuple[str, int], int]) -> None:
    """The outcome in the audit log; missing deliveries back in the outbox (same keys)."""
    with store.session() as s:
        for did in requeue.values():
            row = s.get(DeliveryRow, did)
            assert row is not None
            row.state, row.attempts, row.delivered_at = "pending", 0, None
            row.last_error = f"reconciliation {r.day}: not held by the {r.destination} platform"
        where = {"destination": r.destination, "kind": r.kind, "day": r.day}
        events = [Event("reconcile_missing", i, v, where) for i, v in r.missing]
        events += [Event("reconcile_unknown", i, v, {**where, "receipt": rc})
                   for i, v, rc in r.unknown_to_hub]  # fmt: skip
        summary = r.as_dict()
        summary["missing"] = len(r.missing)
        summary["unknown_to_hub"] = len(r.unknown_to_hub)
        events.append(Event("reconciled", r.destination, None, summary))
        append(s, events)
    level = logging.INFO if r.matched else logging.WARNING
    log.log(level, "reconcile %s %s %s: hub %d, platform %d, %s; %d missing (%d re-queued), "
            "%d unknown to the hub", r.destination, r.kind, r.day, r.hub_count, r.platform_count,
            "digests match" if r.matched else "digests differ", len(r.missing), r.redelivered,
            len(r.unknown_to_hub))  # fmt: skip


def run(settings: Settings, store: Store, *, day: date | None = None) -> StageResult:
    """The daily run: yesterday (China Standard Time) at every configured platform, each
    kind it receives, and the licenses cross-checked against the case records
    (:mod:`ehub.crosscheck`). A platform without a URL in the settings is skipped
    (and said so in the result)."""
    from ehub.crosscheck import cross_check
    from ehub.pipeline.deliver import client_for
    from ehub.pipeline.delivery_items import CHANNELS

    day = day or (datetime.now(CST).date() - timedelta(days=1))
    totals = {"hub": 0, "platform": 0, "matched": 1, "missing": 0, "redelivered": 0,
              "unknown_to_hub": 0}  # fmt: skip
    skipped = []
    for destination, channels in CHANNELS.items():
        if not getattr(settings, f"{destination}_url"):
            skipped.append(destination)
            continue
        client = client_for(settings, destination)
        try:
            for channel in channels:
                r = reconcile(store, client, day, destination=destination, kind=channel.kind)
                totals["hub"] += r.hub_count
                totals["platform"] += r.platform_count
                totals["matched"] &= int(r.matched)
                totals["missing"] += len(r.missing)
                totals["redelivered"] += r.redelivered
                totals["unknown_to_hub"] += len(r.unknown_to_hub)
        finally:
            client.close()
    if skipped:
        log.warning("reconcile: no URL configured for %s; not reconciled", ", ".join(skipped))
    check = cross_check(store)
    with store.session() as s:
        append(s, [Event("cross_checked", "licenses/cases", None, check.counts())])
    if not check.consistent:
        log.warning("cross-check: %s (see `ehub crosscheck`)", check.counts())
    return StageResult("reconcile", 1, {**check.counts(), **totals,
                                        "destinations_not_configured": len(skipped)})  # fmt: skip
