"""``ehub bench``: measured throughput of the stages that exist -> ``out/bench/bench.json``.

Every figure is measured in this run on generated data; a figure of a stage
that is not built yet is reported as ``null`` with the reason under ``missing``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import resource
import shutil
import time
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ehub import devstack
from ehub.bench_delivery import commit_to_receipt, delivery_figures
from ehub.bench_fastseal import seal_fast_per_s
from ehub.bench_feeds import (
    feed_latency,
    median_run,
    publish_figures,
    publish_figures_on_postgres,
)
from ehub.bench_memory import source_run_peak
from ehub.bench_seal_memory import seal_memory_series
from ehub.config import Settings
from ehub.tasks import run_stage, stage_gc
from signing.pki import DevPKI

FIGURES = (
    "extract_sql_per_s",
    "normalize_per_s",
    "seal_pyhanko_loop_per_s",
    "seal_fast_per_s",
    "seal_bb_per_s",
    "seal_bt_per_s",
    "seal_api_p95_ms",
    "deliver_per_s",
    "deliver_catalog_per_s",
    "deliver_case_per_s",
    "deliver_p95_ms",
    "publish_per_s",
    "feed_p95_ms",
    "e2e_license_per_s",
    "e2e_case_per_s",
    "peak_rss_mb_10k",
    "peak_rss_mb_1m",
    "seal_memory_growth_mb",
    "sm2_sign_per_s",
    "ofd_seal_per_s",
)
MISSING = {
    "seal_fast_per_s": "the fast-path run did not complete (see seal_fast)",
    "deliver_p95_ms": "the commit-to-receipt run did not complete (see delivery.commit_to_receipt)",
    "feed_p95_ms": "the continuous feed run did not complete (see feeds.latency)",
    "e2e_case_per_s": "the case-record pipeline run did not complete (see case_pipeline)",
    "peak_rss_mb_10k": "skipped: run `ehub bench --memory-rows 10000,1000000`",
    "peak_rss_mb_1m": "skipped: run `ehub bench --memory-rows 10000,1000000`",
    "seal_memory_growth_mb": "skipped: run `ehub bench --seal-memory 2000` (100000 for 100 k)",
}


def _rate(n: int, seconds: float) -> float:
    return round(n / seconds, 1) if seconds > 0 else 0.0


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def normalize_figure(
    normalize_all: Callable[[], object], rows: int
) -> tuple[float, dict[str, Any]]:
    """``normalize_per_s``: ``rows`` records mapped and validated per second of one core.

    Measured as the normalize stage runs it: under the stage's garbage-collection
    regime (:func:`ehub.tasks.stage_gc`), not CPython's default one, which walks the
    whole heap every few hundred records. "One core": CPU time of this thread, best
    of five passes over the same rows (the first also warms the caches), so other
    processes competing for the machine's cores do not count; the wall-clock rate
    is kept beside it."""
    cpu, wall = [], []
    with stage_gc():
        for _ in range(5):
            c0, w0 = time.thread_time(), time.perf_counter()
            normalize_all()
            cpu.append(time.thread_time() - c0)
            wall.append(time.perf_counter() - w0)
    return _rate(rows, min(cpu)), {
        "method": "thread CPU time, best of 5 passes over the same rows, "
        "under the normalize stage's garbage-collection regime",
        "rows": rows,
        "cpu_s": [round(x, 3) for x in cpu],
        "wall_per_s": _rate(rows, min(wall)),
    }


def _case_pipeline(settings: Settings) -> dict[str, Any]:
    """Case records (办件, no document) end to end through the stages: extract and
    normalize the acceptance system's records, deliver them to the provincial
    platform, publish them to the offices' feeds. Runs after the license stages, so
    the deliver and publish stages find only the case rows pending."""
    source = "acceptance.case_records"
    stage_s: dict[str, float] = {}
    cpu_s: dict[str, float] = {}
    results: dict[str, dict[str, Any]] = {}
    for stage in ("extract", "normalize", "deliver", "publish"):
        sid = source if stage in ("extract", "normalize") else None
        cpu = time.process_time()
        results[stage], stage_s[stage] = _timed(functools.partial(run_stage, stage, settings, sid))
        cpu_s[stage] = time.process_time() - cpu
    delivered = int(results["deliver"]["delivered"])
    return {
        "e2e_case_per_s": _rate(delivered, sum(stage_s.values())),
        "delivered": delivered,
        "published": int(results["publish"]["published"]),
        "stage_seconds": {k: round(v, 3) for k, v in stage_s.items()},
        # CPU time of this process (all its threads) per stage; the rest of a stage's
        # seconds is the platform simulator's, the broker's, or waiting for a core.
        "stage_cpu_seconds": {k: round(v, 3) for k, v in cpu_s.items()},
        "results": results,
    }


def run_bench(
    *,
    count: int,
    out_path: Path,
    console: Console,
    seal_loop: int = 100,
    memory_rows: tuple[int, ...] = (10_000, 1_000_000),
    seal_memory: int = 2000,
    seal_api_posts: int = 200,
    delivery_cases: int = 20_000,
    delivery_latency_posts: int = 100,
) -> dict[str, Any]:
    from ehub.normalize import RecordRejected
    from ehub.normalize.canonical import SpecNormalizer
    from ehub.sources.build import build_source
    from ehub.sources.loader import find_spec

    spec = find_spec("market_regulation.business_licenses")

    work = out_path.parent / "work"
    shutil.rmtree(work, ignore_errors=True)
    home = work / "home"
    figures: dict[str, Any] = dict.fromkeys(FIGURES)
    stages: dict[str, float] = {}
    seal_api: dict[str, Any] = {}
    case_run: dict[str, Any] = {}
    fast_seal: dict[str, Any] = {}
    feeds: dict[str, Any] = {}
    delivery: dict[str, Any] = {}
    normalize_detail: dict[str, Any] = {}
    state = devstack.up(
        home, seed_count=count, defect_rate=0.05, seed=1,
        departments=("market_regulation", "acceptance"),
        out_dir=work / "out",
    )  # fmt: skip
    try:
        settings = Settings.from_env(home=home, out_dir=work / "out", batch_size=500)
        src = build_source(spec.model_copy(update={"batch_size": 1000}), settings)
        rows, secs = _timed(lambda: [r for b in src.read(None) for r in b.records])
        src.close()
        figures["extract_sql_per_s"] = _rate(len(rows), secs)
        normalizer = SpecNormalizer(spec)

        def normalize_all() -> int:
            ok = 0
            for r in rows:
                try:
                    normalizer.normalize(r.payload, r.key, r.version)
                    ok += 1
                except RecordRejected:
                    pass
            return ok

        figures["normalize_per_s"], normalize_detail = normalize_figure(normalize_all, len(rows))

        results: dict[str, dict[str, Any]] = {}
        for stage in ("extract", "normalize", "seal", "deliver", "publish"):
            sid = spec.id if stage in ("extract", "normalize") else None
            results[stage], stages[stage] = _timed(
                functools.partial(run_stage, stage, settings, sid)
            )
        sealed = int(results["seal"]["sealed"])
        figures["seal_bb_per_s"] = _rate(sealed, stages["seal"])
        figures["deliver_per_s"] = _rate(int(results["deliver"]["delivered"]), stages["deliver"])
        publish_stage_per_s = _rate(int(results["publish"]["published"]), stages["publish"])
        figures["e2e_license_per_s"] = _rate(sealed, sum(stages.values()))
        case_run = _case_pipeline(settings)
        figures["e2e_case_per_s"] = case_run["e2e_case_per_s"]
        figures["seal_pyhanko_loop_per_s"] = _pyhanko_loop(settings, seal_loop)
        fast_seal = seal_fast_per_s(settings, max(1000, 10 * seal_loop))
        figures["seal_fast_per_s"] = fast_seal["per_s"]
        figures["seal_bt_per_s"] = _bt_loop(settings, seal_loop)
        seal_api = _seal_api(settings, seal_api_posts)
        figures["seal_api_p95_ms"] = seal_api["p95_ms"]
        delivery = delivery_figures(settings, delivery_cases)
        figures["deliver_catalog_per_s"] = delivery["deliver_catalog_per_s"]
        figures["deliver_case_per_s"] = delivery["deliver_case_per_s"]
        delivery["commit_to_receipt"] = commit_to_receipt(settings, delivery_latency_posts)
        figures["deliver_p95_ms"] = delivery["commit_to_receipt"].get("provincial_p95_ms")
        # Return feeds on a 50 k backlog across the dev offices: routing + masking +
        # signing + publishing (the journey's publish stage rate is kept beside it),
        # then commit -> publication in continuous mode (the feed worker).
        feeds = median_run(functools.partial(publish_figures, settings, 50_000))
        feeds["journey_publish_stage_per_s"] = publish_stage_per_s
        # The same backlog on PostgreSQL (the production store, sharded), beside it.
        feeds["postgresql"] = median_run(
            functools.partial(publish_figures_on_postgres, settings, 50_000)
        )
        figures["publish_per_s"] = feeds["publish_per_s"]
        feeds["latency"] = feed_latency(settings, records=200, rate=20.0)
        figures["feed_p95_ms"] = feeds["latency"]["feed_p95_ms"]
    finally:
        devstack.down(home)
    from signing.ofd_seal import ofd_seal_per_s
    from signing.sm2 import sm2_sign_per_s

    figures["sm2_sign_per_s"] = round(sm2_sign_per_s(3000), 1)  # CPU time of one thread
    figures["ofd_seal_per_s"] = round(ofd_seal_per_s(50), 1)  # render OFD + SM2 seal, one core
    memory_runs = {}
    for rows in memory_rows:
        console.print(f"memory run: a {rows:,}-row source, extract + normalize …")
        memory_runs[rows] = source_run_peak(work, rows)
    if 10_000 in memory_runs:
        figures["peak_rss_mb_10k"] = memory_runs[10_000]["peak_rss_mb"]
    if 1_000_000 in memory_runs:
        figures["peak_rss_mb_1m"] = memory_runs[1_000_000]["peak_rss_mb"]
    seal_series = None
    if seal_memory > 0:
        console.print(f"seal memory run: {seal_memory:,} seals in a fresh process …")
        seal_series = seal_memory_series(work, seal_memory)
        figures["seal_memory_growth_mb"] = seal_series["growth_mb"]
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {
        "figures": figures,
        "missing": {k: v for k, v in MISSING.items() if figures.get(k) is None},
        "sizes": {"records": count, "seal_loop": seal_loop, "seeded": state.get("seeded", {})},
        "stage_seconds": {k: round(v, 3) for k, v in stages.items()},
        "normalize": normalize_detail,
        "seal_api": seal_api,
        "case_pipeline": case_run,
        "seal_fast": fast_seal,
        "feeds": feeds,
        "delivery": delivery,
        "memory_runs": {str(k): v for k, v in memory_runs.items()},
        "peak_rss_ratio_1m_to_10k": (
            round(figures["peak_rss_mb_1m"] / figures["peak_rss_mb_10k"], 2)
            if figures["peak_rss_mb_1m"] and figures["peak_rss_mb_10k"]
            else None
        ),
        "seal_memory": seal_series,
        "peak_rss_mb_process": round(rss_mb, 1),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "processor": platform.machine(),
        },
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, ensure_ascii=False, indent=2))
    table = Table(title="ehub bench")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for k in FIGURES:
        table.add_row(k, "—" if figures[k] is None else f"{figures[k]:,}")
    console.print(table)
    console.print(f"written: {out_path}")
    return result


def _bench_document(settings: Settings) -> tuple[DevPKI, bytes]:
    """The dev PKI and one rendered license of the store (what the seal loops sign)."""
    from ehub.pipeline.seal import ensure_dev_seal
    from ehub.store.db import Store
    from ehub.store.models import LicenseRow
    from ehub.templates import license_view
    from signing.render import render_license_pdf

    store = Store(settings.database_url)
    try:
        _seal_id, pki = ensure_dev_seal(settings, store)
        with store.session() as s:
            doc = s.query(LicenseRow.document).first()
    finally:
        store.dispose()
    assert doc is not None
    return pki, render_license_pdf(license_view(doc[0], verify_url=settings.verify_url))


def _pyhanko_loop(settings: Settings, n: int) -> float:
    """A plain pyHanko ``sign_pdf`` loop on the same key and template (the baseline)."""
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import fields, signers

    pki, pdf = _bench_document(settings)
    signer = signers.SimpleSigner.load_pkcs12_data(
        pki.seal_p12_path.read_bytes(), other_certs=(), passphrase=pki.passphrase.encode()
    )
    meta = signers.PdfSignatureMetadata(
        field_name="Sig1", subfilter=fields.SigSeedSubFilter.PADES, md_algorithm="sha256"
    )
    t = time.perf_counter()
    for _ in range(n):
        signers.sign_pdf(IncrementalPdfFileWriter(BytesIO(pdf)), meta, signer=signer)
    return _rate(n, time.perf_counter() - t)


def _bt_loop(settings: Settings, n: int) -> float:
    """ehub's sealer at B-T (RFC 3161 timestamp from the dev TSA over loopback HTTP)."""
    from signing.pades import PadesSealer
    from signing.pki_services import serve_pki

    pki, pdf = _bench_document(settings)
    # The dev stack serves the PKI's CRL + TSA endpoint on its fixed port; serve
    # it here only when the stack could not.
    running = pki.services is not None and _answers(pki.services.root_crl)
    with contextlib.nullcontext() if running else serve_pki(pki):
        sealer = PadesSealer(
            pki.seal_p12_path, pki.passphrase, level="B-T", tsa_url=pki.tsa_url,
            trust_roots=[pki.root_cert_path],
        )  # fmt: skip
        t = time.perf_counter()
        for _ in range(n):
            sealer.seal(pdf, reason="bench", location="山东")
        return _rate(n, time.perf_counter() - t)


def _seal_api(settings: Settings, posts: int) -> dict[str, Any]:
    """On-demand sealing over HTTP: the dev stack's API server (its own process) seals
    ``posts`` licenses posted one after another by the issuing-system simulator, B-B."""
    from ehub.on_demand import issue_licenses
    from ehub.store.db import Store

    store = Store(settings.database_url)
    try:
        result = issue_licenses(store, settings.verify_url.rsplit("/verify", 1)[0], posts, warmup=5)
    finally:
        store.dispose()
    result.pop("identifiers")
    return {**result, "level": "B-B", "method": "sequential posts over loopback HTTP, "
            "request to last byte of the sealed PDF, 5 warm-up posts not counted, nearest-rank "
            "percentiles"}  # fmt: skip


def _answers(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
