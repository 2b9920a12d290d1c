"""Delivery figures of ``ehub bench``: outbox rows → acknowledged receipts, per kind.

``deliver_per_s`` (the provincial platform, licenses with their sealed PDFs)
is measured by the bench's stage run. Here: case records to both platforms
and catalog entries (with seal registrations) to the national one, from store
rows to receipts over loopback HTTP, against the dev stack's strict simulators.
The case records are synthetic versions written as the normalize stage writes
them (row and outbox rows in one transaction), valid against the contract.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from ehub.config import Settings
from ehub.pipeline import deliver, outbox
from ehub.store.db import Store, utcnow
from ehub.store.models import CaseRow
from ehub.store.models import Source as SourceRow

BENCH_SOURCE = "bench.cases"


def sample_case(n: int, *, division: str = "370602", version: int = 1) -> dict[str, Any]:
    """A canonical case record version that satisfies ``schemas/case.schema.json``."""
    number = f"11370602MB2855844X00010001202611{n:08d}"
    return {
        "BJBH": number, "SSBM": "11370602MB2855844X0001000100001", "SXMC": "企业设立登记",
        "SSJG": "烟台市芝罘区市场监督管理局", "SSJGDM": "11370602MB2855844X",
        "XZQHDM": division, "BJLX": "1", "SQRLX": "1", "SQRMC": "烟台示例有限公司",
        "SQRZJHM": "91370602MA3C5R8X1K", "SQRZJLX": "001", "SBQD": "pc", "BJZT": "completed",
        "SBSJ": "2026-11-20T09:00:00+08:00", "SLSJ": "2026-11-20T10:00:00+08:00",
        "SPSJ": "2026-11-20T15:00:00+08:00", "BJSJ": "2026-11-21T09:00:00+08:00",
        "CNBJSX": 5, "FDBJSX": 20, "BJJG": "granted", "JGZZBS": [], "HCP": None,
        "BBH": version,
        "lineage": {"source": BENCH_SOURCE, "source_key": str(n), "source_version": "",
                    "content_hash": hashlib.sha256(number.encode()).hexdigest()},
    }  # fmt: skip


def add_cases(store: Store, count: int, *, start: int = 0) -> list[tuple[str, int]]:
    """Store ``count`` synthetic case versions with their outbox rows; their keys."""
    keys: list[tuple[str, int]] = []
    with store.session() as s:
        if s.get(SourceRow, BENCH_SOURCE) is None:
            s.add(SourceRow(id=BENCH_SOURCE, department="bench", kind="sql", record_kind="case",
                            created_at=utcnow()))  # fmt: skip
            s.flush()
        for n in range(start, start + count):
            doc = sample_case(n)
            s.add(CaseRow(case_number=doc["BJBH"], version=1, division=doc["XZQHDM"],
                          content_hash=doc["lineage"]["content_hash"], document=doc,
                          source_id=BENCH_SOURCE, source_key=str(n), raw_id=None,
                          created_at=utcnow()))  # fmt: skip
            keys.append((doc["BJBH"], 1))
        s.flush()
        outbox.add_case_rows(s, keys)
    return keys


def delivery_figures(settings: Settings, cases: int) -> dict[str, Any]:
    """Case records to both platforms and the national catalog, timed separately."""
    store = Store(settings.database_url)
    try:
        add_cases(store, cases)
        out: dict[str, Any] = {"cases": cases}
        t = time.perf_counter()
        national = deliver.run(settings, store, destination="national", kinds=["seal", "license"])
        secs = time.perf_counter() - t
        out["catalog"] = {**national.counts, "seconds": round(secs, 3)}
        n = national.counts.get("delivered_license", 0) + national.counts.get("delivered_seal", 0)
        out["deliver_catalog_per_s"] = round(n / secs, 1) if secs else 0.0
        total, secs = 0, 0.0
        for destination in ("provincial", "national"):
            t = time.perf_counter()
            r = deliver.run(settings, store, destination=destination, kinds=["case"])
            took = time.perf_counter() - t
            out[f"case_{destination}"] = {**r.counts, "seconds": round(took, 3)}
            total += r.counts.get("delivered_case", 0)
            secs += took
        out["deliver_case_per_s"] = round(total / secs, 1) if secs else 0.0
        return out
    finally:
        store.dispose()


def commit_to_receipt(settings: Settings, posts: int) -> dict[str, Any]:
    """Commit-to-receipt latency with the continuous delivery worker running.

    Licenses are posted one after another to the dev stack's sealing API, which
    commits each sealed version with its outbox rows; the worker (a thread of
    this process, polling every 0.2 s) sends them. The latency of a row is its
    ``delivered_at`` (receipt stored) minus its ``created_at`` (written in the
    sealing transaction, just before its commit), for the provincial platform
    (license with its PDF) and the national one (catalog entry).
    """
    import threading

    from sqlalchemy import func, select

    from ehub.on_demand import issue_licenses, percentile
    from ehub.pipeline.delivery_worker import serve
    from ehub.store.models import DeliveryRow

    store = Store(settings.database_url)
    stop = threading.Event()
    worker = threading.Thread(target=serve, args=(settings, store), kwargs={"stop": stop},
                              daemon=True)  # fmt: skip
    worker.start()
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # what earlier phases left is sent first
            with store.session() as s:
                left = s.scalar(select(func.count()).select_from(DeliveryRow)
                                .where(DeliveryRow.state == "pending"))  # fmt: skip
            if not left:
                break
            time.sleep(0.2)
        posted = issue_licenses(store, settings.verify_url.rsplit("/verify", 1)[0], posts,
                                first=900_000, warmup=0)  # fmt: skip
        idents = posted["identifiers"]
        lat: dict[str, list[float]] = {}
        while time.monotonic() < deadline:
            with store.session() as s:
                rows = s.execute(
                    select(DeliveryRow.destination, DeliveryRow.created_at,
                           DeliveryRow.delivered_at)
                    .where(DeliveryRow.kind == "license", DeliveryRow.subject.in_(idents))
                ).all()  # fmt: skip
            if len(rows) == 2 * len(idents) and all(r.delivered_at for r in rows):
                for dest, created, delivered in rows:
                    assert delivered is not None
                    lat.setdefault(dest, []).append((delivered - created).total_seconds() * 1000)
                break
            time.sleep(0.2)
    finally:
        stop.set()
        worker.join(timeout=60)
        store.dispose()
    return {
        "posts": posts,
        "method": "sealing API posts, continuous worker polling every 0.2 s; outbox row "
        "created (sealing transaction) to receipt stored; nearest-rank percentiles",
        **{f"{dest}_p95_ms": percentile(v, 95) for dest, v in sorted(lat.items())},
        **{f"{dest}_p50_ms": percentile(v, 50) for dest, v in sorted(lat.items())},
        "complete": bool(lat),
    }
