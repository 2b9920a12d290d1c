"""GET /metrics on a populated store (SQLite and PostgreSQL): the scraped text, parsed
with prometheus_client's own parser, equals the counts computed here from the rows
the test wrote."""

from __future__ import annotations

import math
import random
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from ehub.metrics import StoreCollector, create_router
from ehub.store.db import Store, utcnow
from ehub.store.models import (
    CaseRow,
    CircuitRow,
    DeliveryRow,
    FeedMessageRow,
    LicenseRow,
    QuarantineRow,
    RawRecord,
    Source,
)

LICENSE_SOURCES = ("market_regulation.business_licenses", "health.physicians")
CASE_SOURCE = "acceptance.cases"
REASONS = ("E_USCC_CHECK", "E_DATE_INVALID", "E_DIVISION_UNKNOWN")
OFFICES = ("370600", "370200")


def _populate(store: Store, rng: random.Random) -> dict[str, Any]:
    """Write a random but known population; return what it holds, counted here."""
    now = utcnow()
    exp: dict[str, Any] = {
        "raw": Counter(), "licenses": Counter(), "cases": Counter(), "q_records": Counter(),
        "q_rows": Counter(), "deliveries": Counter(), "attempts": Counter(), "failing": Counter(),
        "oldest_pending": {}, "feed": Counter(), "feed_oldest": {}, "feed_lags": {},
    }  # fmt: skip
    with store.session() as s:
        for sid in (*LICENSE_SOURCES, CASE_SOURCE):
            kind = "case" if sid == CASE_SOURCE else "license"
            s.add(Source(id=sid, department=sid.split(".")[0], kind="sql", record_kind=kind,
                         created_at=now))  # fmt: skip
        s.flush()
        raws: list[RawRecord] = []
        for n in range(120):
            src = rng.choice((*LICENSE_SOURCES, CASE_SOURCE))
            state = rng.choice(("pending", "normalized", "normalized", "quarantined"))
            raw = RawRecord(source_id=src, source_key=f"K{n}", source_version="1", payload={},
                            payload_hash=f"h{n}", state=state, extracted_at=now)  # fmt: skip
            s.add(raw)
            raws.append(raw)
            exp["raw"][(src, state)] += 1
        s.flush()
        for raw in raws:
            if raw.state != "quarantined":
                continue
            qstate = rng.choice(("open", "open", "retried"))
            reasons = rng.sample(REASONS, rng.randint(1, 2))
            fields = ("ZZBH", "CZZTDM") if rng.random() < 0.3 else ("ZZBH",)
            for reason in reasons:
                for fld in fields:
                    s.add(QuarantineRow(raw_id=raw.id, source_id=raw.source_id,
                                        source_key=raw.source_key, reason_code=reason, field=fld,
                                        message_zh="错", message_en="bad", value=None, payload={},
                                        state=qstate, created_at=now))  # fmt: skip
                    if qstate == "open":
                        exp["q_rows"][(raw.source_id, reason)] += 1
                if qstate == "open":
                    exp["q_records"][(raw.source_id, reason)] += 1
        licenses: list[LicenseRow] = []
        for n in range(40):
            state = rng.choice(("normalized", "sealed", "sealed", "held", "sealing"))
            lic = LicenseRow(identifier=f"L{n}", version=1, type_code="T", issuer_code="U",
                             holder_division="370602", county="370602", status="valid",
                             content_hash="h", document={}, source_id=LICENSE_SOURCES[0],
                             source_key=str(n), raw_id=None, state=state, state_reason=None,
                             created_at=now)  # fmt: skip
            s.add(lic)
            licenses.append(lic)
            exp["licenses"][state] += 1
        cases: list[CaseRow] = []
        for n in range(25):
            case = CaseRow(case_number=f"BJ{n}", version=1, division="370602", content_hash="h",
                           document={}, source_id=CASE_SOURCE, source_key=str(n), raw_id=None,
                           created_at=now)  # fmt: skip
            s.add(case)
            cases.append(case)
            exp["cases"][CASE_SOURCE] += 1
        s.flush()
        records = [("license", r.id) for r in licenses] + [("case", r.id) for r in cases]
        for n, (kind, rid) in enumerate(records):
            for dest in ("provincial", "national"):
                if rng.random() < 0.2:
                    continue
                state = rng.choice(("pending", "pending", "delivered", "rejected", "dead"))
                attempts = rng.randint(0, 8)
                error = "HTTP 503" if rng.random() < 0.5 else None
                created = now - timedelta(seconds=rng.randint(10, 5000))
                s.add(DeliveryRow(kind=kind, **{f"{kind}_id": rid}, subject=f"S{n}", version=1,
                                  destination=dest, idempotency_key=f"{dest}{kind}{n}",
                                  state=state, attempts=attempts, last_error=error,
                                  created_at=created))  # fmt: skip
                exp["deliveries"][(dest, kind, state)] += 1
                exp["attempts"][(dest, state)] += attempts
                if state == "pending":
                    exp["failing"][dest] += error is not None
                    exp["oldest_pending"][dest] = min(
                        exp["oldest_pending"].get(dest, created), created
                    )
        s.add(CircuitRow(destination="provincial", state="open", failures=5, opened_at=now,
                         last_error="HTTP 503", updated_at=now))  # fmt: skip
        s.add(CircuitRow(destination="national", state="closed", failures=0, opened_at=None,
                         last_error=None, updated_at=now))  # fmt: skip
        for n, lic in enumerate(licenses):
            office = OFFICES[n % 2]
            state = rng.choice(("pending", "sending", "published", "published"))
            created = now - timedelta(seconds=rng.randint(100, 9000))
            published = (
                created + timedelta(seconds=rng.randint(1, 90)) if state == "published" else None
            )
            s.add(FeedMessageRow(kind="license", license_id=lic.id, office=office,
                                 topic=f"ehub.return.office.{office}", message_key=lic.identifier,
                                 message_id=f"m{n}", state=state, created_at=created,
                                 published_at=published))  # fmt: skip
            exp["feed"][(office, "published" if state == "published" else "waiting")] += 1
            if published is not None:
                exp["feed_lags"].setdefault(office, []).append(
                    (published - created).total_seconds()
                )
            else:
                exp["feed_oldest"][office] = min(exp["feed_oldest"].get(office, created), created)
    exp["now"] = now
    return exp


def _scrape(store: Store) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    app = FastAPI()
    app.include_router(create_router(store, cache_s=0))
    with TestClient(app) as client:
        resp = client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for fam in text_string_to_metric_families(resp.text):
        for sample in fam.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def _values(
    scraped: dict[str, dict[tuple[tuple[str, str], ...], float]], name: str, *labels: str
) -> dict[tuple[str, ...], float]:
    return {tuple(dict(k)[lbl] for lbl in labels): v for k, v in scraped.get(name, {}).items()}


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return round(ordered[math.ceil(0.95 * len(ordered)) - 1], 1)


def test_scrape_equals_independent_counts(store_url: str) -> None:
    store = Store(store_url)
    store.migrate()
    try:
        exp = _populate(store, random.Random(7))
        got = _scrape(store)
    finally:
        store.dispose()

    assert got["ehub_store_up"][()] == 1
    assert _values(got, "ehub_raw_records", "source", "state") == dict(exp["raw"])
    assert _values(got, "ehub_license_versions", "state") == {
        (k,): v for k, v in exp["licenses"].items()
    }
    assert _values(got, "ehub_case_versions", "source") == {(CASE_SOURCE,): 25}
    assert _values(got, "ehub_quarantine_records", "source", "reason") == dict(exp["q_records"])
    assert _values(got, "ehub_quarantine_defects", "source", "reason") == dict(exp["q_rows"])
    assert _values(got, "ehub_deliveries", "destination", "kind", "state") == dict(
        exp["deliveries"]
    )
    assert _values(got, "ehub_delivery_attempts", "destination", "state") == dict(exp["attempts"])
    dead = Counter({d: 0 for d in ("provincial", "national")})
    for (d, _k, st), n in exp["deliveries"].items():
        dead[d] += n if st == "dead" else 0
    assert _values(got, "ehub_delivery_dead_letters", "destination") == {
        (d,): n for d, n in dead.items()
    }
    assert _values(got, "ehub_delivery_failing", "destination") == {
        (d,): exp["failing"][d] for d in ("provincial", "national")
    }
    for d, oldest in exp["oldest_pending"].items():
        age = got["ehub_delivery_outbox_age_seconds"][(("destination", d),)]
        expected = (exp["now"] - oldest).total_seconds()
        assert expected <= age < expected + 120, (d, age, expected)
    circuit = _values(got, "ehub_delivery_circuit_state", "destination", "state")
    assert circuit[("provincial", "open")] == 1 and circuit[("provincial", "closed")] == 0
    assert circuit[("national", "closed")] == 1 and circuit[("national", "open")] == 0

    # The overview is the sum of the details.
    stage = _values(got, "ehub_stage_records", "stage", "status")
    for state in ("pending", "normalized", "quarantined"):
        assert stage[("normalize", state)] == sum(
            n for (_, st), n in exp["raw"].items() if st == state
        )
    assert stage[("deliver", "pending")] == sum(
        n for (_, _, st), n in exp["deliveries"].items() if st == "pending"
    )
    assert stage[("seal", "held")] == exp["licenses"]["held"]

    assert _values(got, "ehub_feed_messages", "office", "state") == dict(exp["feed"])
    for office in OFFICES:
        lag = got["ehub_feed_lag_seconds"][(("office", office),)]
        expected = (exp["now"] - exp["feed_oldest"][office]).total_seconds()
        assert expected <= lag < expected + 120
        p95 = got["ehub_feed_publish_lag_p95_seconds"][(("office", office),)]
        assert p95 == pytest.approx(_p95(exp["feed_lags"][office]), abs=0.05)


def test_unreachable_store_reports_down_instead_of_failing() -> None:
    store = Store("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")
    try:
        got = _scrape(store)
    finally:
        store.dispose()
    assert got["ehub_store_up"][()] == 0
    assert "ehub_raw_records" not in got


def test_results_are_reused_within_the_cache_window(tmp_path: Any) -> None:
    store = Store(f"sqlite:///{tmp_path / 'hub.db'}")
    store.migrate()
    ticks = iter([0.0, 5.0, 20.0])
    collector = StoreCollector(store, cache_s=10.0, clock=lambda: next(ticks))

    def raw_total() -> float:
        fams = {m.name: m for m in collector.collect()}
        return sum(s.value for s in fams["ehub_stage_records"].samples)

    try:
        assert raw_total() == 0
        with store.session() as s:
            s.add(Source(id="a.b", department="a", kind="sql", record_kind="license",
                         created_at=utcnow()))  # fmt: skip
            s.flush()
            s.add(RawRecord(source_id="a.b", source_key="1", source_version="1", payload={},
                            payload_hash="h", state="pending", extracted_at=utcnow()))  # fmt: skip
        assert raw_total() == 0  # 5 s later: the cached read
        assert raw_total() == 1  # 20 s later: read again
    finally:
        store.dispose()
