"""Drive the on-demand sealing API the way a department's issuing system does.

Used by ``make demo`` (licenses issued while the stack runs, then carried by the
delivery and feed DAGs) and ``make bench`` (``figures.seal_api_p95_ms``):
register an API client for the market regulation bureau, post ``count``
licenses one after another over HTTP to a running hub API, and time each post
from request to the last byte of the sealed PDF.
"""

from __future__ import annotations

import math
import secrets
import statistics
import time
from pathlib import Path
from typing import Any

import httpx

from ehub.api_clients import create_client
from ehub.store.db import Store
from signing.pki import DEV_DEPARTMENT_USCC
from simulators.issuing_system import SOURCE_ID, license_post, post_license


def issue_licenses(
    store: Store,
    base_url: str,
    count: int,
    *,
    seed: int = 9,
    first: int = 1,
    warmup: int = 3,
    trust_root: Path | None = None,
) -> dict[str, Any]:
    """Post ``count`` licenses (plus ``warmup`` posts not timed); the latencies and answers.

    Warm-up posts open the hub's sealer and caches (the first signature of a
    process loads the key); they are excluded from the percentiles.
    """
    _info, token = create_client(
        store, f"issuing-system-{secrets.token_hex(4)}", DEV_DEPARTMENT_USCC, [SOURCE_ID]
    )
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    identifiers: list[str] = []
    invalid = 0
    with httpx.Client(base_url=base_url, timeout=60) as http:
        for i in range(warmup + count):
            payload = license_post(first + i, issuer_uscc=DEV_DEPARTMENT_USCC, seed=seed)
            t = time.perf_counter()
            r = post_license(http, token, payload)
            body = r.content
            ms = (time.perf_counter() - t) * 1000
            if i < warmup:
                continue
            statuses[str(r.status_code)] = statuses.get(str(r.status_code), 0) + 1
            latencies.append(ms)
            if r.status_code in (200, 201):
                identifiers.append(r.headers["x-ehub-identifier"])
                if trust_root is not None:
                    from signing.verify import verify_pdf

                    invalid += not verify_pdf(body, [trust_root]).valid
    return {
        "posted": len(latencies),
        "statuses": statuses,
        "identifiers": identifiers,
        "pdfs_invalid": invalid if trust_root is not None else None,
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "max_ms": round(max(latencies), 1) if latencies else None,
        "mean_ms": round(statistics.fmean(latencies), 1) if latencies else None,
    }


def percentile(values: list[float], p: int) -> float | None:
    """Nearest-rank percentile, rounded to 0.1."""
    if not values:
        return None
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))  # nearest rank
    return round(ordered[k], 1)
