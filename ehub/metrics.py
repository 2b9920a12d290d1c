"""The hub's Prometheus endpoint: the store's state, read when Prometheus scrapes.

:class:`StoreCollector` is a custom collector (nothing is counted in process
memory, so every API server and worker reports the same numbers, and a restart
loses nothing): each scrape runs a handful of grouped ``COUNT`` queries on
indexed state columns and turns them into gauges. :func:`create_router` exposes
it as ``GET /metrics`` in Prometheus' text format, on a registry of its own (no
process metrics of whichever server mounts it).

Families (all gauges; labels in braces):

- ``ehub_store_up`` — 1 when the last scrape could read the store, else 0 and no
  other family (an unreachable database is an alert, not a scrape error);
- ``ehub_stage_records{stage,status}`` — the journey at a glance: raw records
  (``normalize``: pending / normalized / quarantined), license versions
  (``seal``: normalized / sealing / sealed / held), outbox rows (``deliver``:
  pending / delivered / rejected / dead), return-feed messages (``publish``:
  pending / sending / published);
- ``ehub_raw_records{source,state}``, ``ehub_license_versions{state}``,
  ``ehub_case_versions{source}``;
- ``ehub_quarantine_records{source,reason}`` (distinct records) and
  ``ehub_quarantine_defects{source,reason}`` (rows), open entries only, as
  ``ehub quarantine counts`` shows them;
- ``ehub_deliveries{destination,kind,state}``,
  ``ehub_delivery_attempts{destination,state}`` (attempts summed over the rows),
  ``ehub_delivery_dead_letters{destination}``, ``ehub_delivery_failing{destination}``
  (pending rows whose last send failed), ``ehub_delivery_outbox_age_seconds{destination}``
  (age of the oldest pending row, 0 when none), ``ehub_delivery_circuit_state{destination,state}``
  (1 for the breaker's current state);
- ``ehub_feed_messages{office,state}`` (``published`` / ``waiting``),
  ``ehub_feed_lag_seconds{office}`` (age of the oldest unpublished message, 0 when
  none), ``ehub_feed_publish_lag_p95_seconds{office}`` (commit to publication),
  as ``ehub office status`` shows them.

Labels carry source ids, reason codes, destinations and office codes only:
never record identifiers or personal data, so the cardinality stays bounded by
the number of sources, reasons and offices.

Counting is linear in the table sizes on PostgreSQL: with tens of millions of
rows a scrape costs seconds, so results are kept for ``cache_s`` seconds and a
scrape interval of a minute or more is right (docs/SCALING.md).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from ehub import deliveries, office_feed, quarantine
from ehub.store.db import Store, utcnow
from ehub.store.models import (
    CaseRow,
    CircuitRow,
    DeliveryRow,
    FeedMessageRow,
    LicenseRow,
    RawRecord,
)

log = logging.getLogger(__name__)

CIRCUIT_STATES = ("closed", "open", "half_open")


@dataclass
class Snapshot:
    """What one scrape read from the store."""

    raw: dict[tuple[str, str], int] = field(default_factory=dict)
    licenses: dict[str, int] = field(default_factory=dict)
    cases: dict[str, int] = field(default_factory=dict)
    quarantine: list[quarantine.ReasonCount] = field(default_factory=list)
    delivery_states: list[deliveries.StateCount] = field(default_factory=list)
    attempts: dict[tuple[str, str], int] = field(default_factory=dict)
    failing: dict[str, int] = field(default_factory=dict)
    circuits: dict[str, str] = field(default_factory=dict)
    feed_states: dict[str, int] = field(default_factory=dict)
    freshness: list[office_feed.Freshness] = field(default_factory=list)
    taken_at: datetime = field(default_factory=utcnow)


def read_snapshot(store: Store) -> Snapshot:
    """Every count the endpoint reports, read from the store."""
    snap = Snapshot()
    with store.session() as s:
        for src, state, n in s.execute(
            select(RawRecord.source_id, RawRecord.state, func.count()).group_by(
                RawRecord.source_id, RawRecord.state
            )
        ):
            snap.raw[(str(src), str(state))] = int(n)
        for state, n in s.execute(
            select(LicenseRow.state, func.count()).group_by(LicenseRow.state)
        ):
            snap.licenses[str(state)] = int(n)
        for src, n in s.execute(
            select(CaseRow.source_id, func.count()).group_by(CaseRow.source_id)
        ):
            snap.cases[str(src)] = int(n)
        for dest, state, total in s.execute(
            select(DeliveryRow.destination, DeliveryRow.state, func.sum(DeliveryRow.attempts))
            .group_by(DeliveryRow.destination, DeliveryRow.state)
        ):  # fmt: skip
            snap.attempts[(str(dest), str(state))] = int(total or 0)
        for dest, n in s.execute(
            select(DeliveryRow.destination, func.count())
            .where(DeliveryRow.state == "pending", DeliveryRow.last_error.is_not(None))
            .group_by(DeliveryRow.destination)
        ):  # fmt: skip
            snap.failing[str(dest)] = int(n)
        for dest, state in s.execute(select(CircuitRow.destination, CircuitRow.state)):
            snap.circuits[str(dest)] = str(state)
        for state, n in s.execute(
            select(FeedMessageRow.state, func.count()).group_by(FeedMessageRow.state)
        ):
            snap.feed_states[str(state)] = int(n)
    snap.quarantine = list(quarantine.counts(store, state="open"))
    snap.delivery_states = deliveries.status(store)
    snap.freshness = office_feed.freshness(store)
    snap.taken_at = utcnow()
    return snap


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _gauge(name: str, doc: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


def families(snap: Snapshot) -> Iterator[Metric]:
    """The metric families of one snapshot."""
    stage = _gauge(
        "ehub_stage_records", "Records per pipeline stage and status.", ["stage", "status"]
    )
    raw_by_state: dict[str, int] = {}
    for (_, state), n in snap.raw.items():
        raw_by_state[state] = raw_by_state.get(state, 0) + n
    delivery_by_state: dict[str, int] = {}
    for c in snap.delivery_states:
        delivery_by_state[c.state] = delivery_by_state.get(c.state, 0) + c.count
    for name, counts in (
        ("normalize", raw_by_state),
        ("seal", snap.licenses),
        ("deliver", delivery_by_state),
        ("publish", snap.feed_states),
    ):
        for status, n in sorted(counts.items()):
            stage.add_metric([name, status], n)
    yield stage

    raw = _gauge("ehub_raw_records", "Extracted records per source and state.", ["source", "state"])
    for (src, state), n in sorted(snap.raw.items()):
        raw.add_metric([src, state], n)
    yield raw
    lic = _gauge("ehub_license_versions", "License versions per state.", ["state"])
    for state, n in sorted(snap.licenses.items()):
        lic.add_metric([state], n)
    yield lic
    cases = _gauge("ehub_case_versions", "Case record versions per source.", ["source"])
    for src, n in sorted(snap.cases.items()):
        cases.add_metric([src], n)
    yield cases

    q_rec = _gauge("ehub_quarantine_records", "Open quarantined records per source and reason.",
                   ["source", "reason"])  # fmt: skip
    q_rows = _gauge("ehub_quarantine_defects", "Open quarantine rows (defects) per source and "
                    "reason.", ["source", "reason"])  # fmt: skip
    for rc in snap.quarantine:
        q_rec.add_metric([rc.source_id, rc.reason_code], rc.records)
        q_rows.add_metric([rc.source_id, rc.reason_code], rc.rows)
    yield q_rec
    yield q_rows

    yield from _delivery_families(snap)
    yield from _feed_families(snap)


def _delivery_families(snap: Snapshot) -> Iterator[Metric]:
    rows = _gauge("ehub_deliveries", "Delivery outbox rows per destination, kind and state.",
                  ["destination", "kind", "state"])  # fmt: skip
    dead = _gauge("ehub_delivery_dead_letters", "Rows that failed every attempt.", ["destination"])
    age = _gauge("ehub_delivery_outbox_age_seconds",
                 "Age of the oldest pending row (0 when none).", ["destination"])  # fmt: skip
    destinations = sorted({c.destination for c in snap.delivery_states} | set(snap.circuits))
    dead_n = dict.fromkeys(destinations, 0)
    oldest: dict[str, datetime] = {}
    for c in snap.delivery_states:
        rows.add_metric([c.destination, c.kind, c.state], c.count)
        if c.state == "dead":
            dead_n[c.destination] += c.count
        if c.state == "pending" and c.oldest is not None:
            at = _aware(c.oldest)
            oldest[c.destination] = min(oldest.get(c.destination, at), at)
    for d in destinations:
        dead.add_metric([d], dead_n[d])
        wait = (snap.taken_at - oldest[d]).total_seconds() if d in oldest else 0.0
        age.add_metric([d], max(wait, 0.0))
    yield rows
    yield dead
    yield age
    attempts = _gauge("ehub_delivery_attempts", "Send attempts summed over the outbox rows.",
                      ["destination", "state"])  # fmt: skip
    for (d, state), n in sorted(snap.attempts.items()):
        attempts.add_metric([d, state], n)
    yield attempts
    failing = _gauge("ehub_delivery_failing", "Pending rows whose last send failed.",
                     ["destination"])  # fmt: skip
    for d in destinations:
        failing.add_metric([d], snap.failing.get(d, 0))
    yield failing
    circuit = _gauge("ehub_delivery_circuit_state", "1 for the circuit breaker's current state.",
                     ["destination", "state"])  # fmt: skip
    for d, current in sorted(snap.circuits.items()):
        for state in CIRCUIT_STATES:
            circuit.add_metric([d, state], 1 if state == current else 0)
    yield circuit


def _feed_families(snap: Snapshot) -> Iterator[Metric]:
    msgs = _gauge("ehub_feed_messages", "Return-feed messages per office: published, waiting.",
                  ["office", "state"])  # fmt: skip
    lag = _gauge("ehub_feed_lag_seconds", "Age of the office's oldest unpublished message "
                 "(0 when none).", ["office"])  # fmt: skip
    p95 = _gauge("ehub_feed_publish_lag_p95_seconds", "95th percentile of record commit to "
                 "publication over the office's last 1000 messages.", ["office"])  # fmt: skip
    for f in snap.freshness:
        msgs.add_metric([f.office, "published"], f.published)
        msgs.add_metric([f.office, "waiting"], f.pending)
        lag.add_metric([f.office], f.oldest_pending_s or 0.0)
        if f.p95_lag_s is not None:
            p95.add_metric([f.office], f.p95_lag_s)
    yield msgs
    yield lag
    yield p95


class StoreCollector(Collector):
    """Reads the store when scraped; a result is reused for ``cache_s`` seconds so that
    several scrapers (or a short interval) do not multiply the load on the database."""

    def __init__(
        self,
        store: Store,
        *,
        cache_s: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.cache_s = cache_s
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[float, list[Metric]] | None = None

    def describe(self) -> list[Metric]:
        # Registering must not query the store (the families are only known on scrape).
        return []

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            now = self._clock()
            if self._cached is None or now - self._cached[0] >= self.cache_s:
                self._cached = (now, self._read())
            metrics = self._cached[1]
        yield from metrics

    def _read(self) -> list[Metric]:
        started = time.perf_counter()
        up = _gauge("ehub_store_up", "1 when the hub store could be read at the last scrape.")
        try:
            out = list(families(read_snapshot(self.store)))
            up.add_metric([], 1)
        except Exception as exc:  # a scrape reports the outage instead of failing
            log.warning("metrics: the hub store is unreadable: %s", type(exc).__name__)
            out = []
            up.add_metric([], 0)
        took = _gauge("ehub_metrics_scrape_seconds", "Time the last store read took.")
        took.add_metric([], round(time.perf_counter() - started, 3))
        return [up, took, *out]


def registry_for(store: Store, *, cache_s: float = 15.0) -> CollectorRegistry:
    """A registry holding only the hub's store collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store, cache_s=cache_s))
    return registry


def create_router(store: Store, *, cache_s: float = 15.0) -> Any:
    """A FastAPI router with ``GET /metrics`` (Prometheus text format 0.0.4)."""
    from fastapi import APIRouter, Response
    from starlette.concurrency import run_in_threadpool

    registry = registry_for(store, cache_s=cache_s)
    router = APIRouter()

    @router.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        body = await run_in_threadpool(generate_latest, registry)
        return Response(content=body, media_type=CONTENT_TYPE_LATEST)

    return router
