"""Peak memory of one source run (extract + normalize) at two sizes, for ``make bench``.

Each size runs in fresh processes: one seeds the market-regulation simulator's
database, another runs the ingest of its YAML spec into an empty SQLite hub
store and reports its own peak RSS. Streaming in bounded batches means the peak
must not grow with the source: the issue's bound is the 1 M-row peak within 2×
the 10 k-row peak.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

_RUN = r"""
import json, os, resource, sys, time
from ehub.config import Settings
from ehub.pipeline import extract, normalize
from ehub.sources.loader import find_spec
from ehub.store.db import Store
spec = find_spec("market_regulation.business_licenses")
settings = Settings.from_env()
store = Store(settings.database_url)
store.migrate()
t = time.perf_counter()
r1 = extract.run(settings, store, spec)
t1 = time.perf_counter()
r2 = normalize.run(settings, store, spec)
t2 = time.perf_counter()
print(json.dumps({
    "rows": r1.counts["read"], "normalized": r2.counts["normalized"],
    "quarantined": r2.counts["quarantined"],
    "extract_s": round(t1 - t, 2), "normalize_s": round(t2 - t1, 2),
    "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
}))
"""


def source_run_peak(work: Path, rows: int) -> dict[str, Any]:
    """Seed ``rows`` rows, ingest them in a fresh process, return its figures."""
    folder = work / f"rss_{rows}"
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "market.db"
    db.unlink(missing_ok=True)
    t = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "simulators", "market-regulation", "--url", f"sqlite:///{db}",
         "--count", str(rows), "--seed", "3", "--defect-rate", "0.02"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    seeded_s = time.perf_counter() - t
    hub = folder / "hub.db"
    hub.unlink(missing_ok=True)
    env = {
        **os.environ,
        "EHUB_HOME": str(folder / "home"),
        "EHUB_DATABASE_URL": f"sqlite:///{hub}",
        "EHUB_BATCH_SIZE": "500",
        "EHUB_SOURCE_BATCH_SIZE": "500",
        "AIRFLOW_CONN_EHUB_SRC_MARKET_REGULATION": json.dumps(
            {"conn_type": "generic", "extra": {"url": f"sqlite:///{db}"}}
        ),
    }
    out = subprocess.run(
        [sys.executable, "-c", _RUN], env=env, check=True, capture_output=True, text=True
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    result["seed_s"] = round(seeded_s, 1)
    for p in (db, hub):
        p.unlink(missing_ok=True)
    return result
