"""Support for the end-to-end tests: a dev stack per test and independent counters."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from kafka import KafkaConsumer, TopicPartition

from connectors.tls import httpx_kwargs
from ehub import devstack
from ehub.config import Settings
from ehub.store.db import Store
from ehub.summary import journey_counts

SEED_COUNT = int(os.environ.get("EHUB_TEST_SEED_COUNT", "160"))
DEFECT_RATE = 0.08
STAGES = ("extract", "normalize", "seal", "deliver", "deliver_national", "publish")
SOURCE = "market_regulation.business_licenses"


def start(home: Path) -> Settings:
    devstack.up(
        home,
        seed_count=SEED_COUNT,
        defect_rate=DEFECT_RATE,
        seed=7,
        departments=("market_regulation",),
    )
    return Settings.from_env(home=home, out_dir=home / "out", batch_size=25, source_batch_size=25)


def stage_env(settings: Settings, fault: str = "") -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "EHUB_HOME": str(settings.home),
            "EHUB_DATABASE_URL": settings.database_url,
            "EHUB_OUT_DIR": str(settings.out_dir),
            "EHUB_BATCH_SIZE": str(settings.batch_size),
            "EHUB_SOURCE_BATCH_SIZE": str(settings.source_batch_size),
            "EHUB_FAULT": fault,
        }
    )
    return env


def run_stage_process(settings: Settings, stage: str, fault: str = "") -> int:
    """One stage in its own process (``ehub stage``); returns the exit code."""
    proc = subprocess.run(
        [sys.executable, "-m", "ehub", "stage", stage]
        + (["--source", SOURCE] if stage in ("extract", "normalize") else []),
        env=stage_env(settings, fault),
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode not in (0, 137):
        raise AssertionError(f"stage {stage} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.returncode


def run_all_stages(settings: Settings) -> None:
    for stage in STAGES:
        assert run_stage_process(settings, stage) == 0


def hub_counts(settings: Settings) -> dict[str, Any]:
    store = Store(settings.database_url)
    try:
        return journey_counts(store)
    finally:
        store.dispose()


def platform_records(settings: Settings) -> list[tuple[str, int]]:
    """(identifier, version) of every license version the platform simulator holds."""
    rows = httpx.get(
        f"{settings.provincial_url}/admin/licenses",
        timeout=30,
        **httpx_kwargs(settings.platform_tls()),  # the simulator requires mutual TLS
    ).json()
    items = rows["licenses"] if isinstance(rows, dict) else rows
    return [(r["identifier"], int(r["version"])) for r in items]


def broker_messages(settings: Settings) -> Counter[str]:
    """Every message id on every return topic, counted with a plain consumer (duplicates show as >1)."""
    consumer = KafkaConsumer(bootstrap_servers=settings.broker, enable_auto_commit=False)
    try:
        topics = [t for t in consumer.topics() if t.startswith(settings.return_topic_prefix)]
        tps = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()]
        ids: Counter[str] = Counter()
        if not tps:
            return ids
        consumer.assign(tps)
        consumer.seek_to_beginning()
        empty = 0
        while empty < 3:
            batch = consumer.poll(timeout_ms=500)
            if not batch:
                empty += 1
                continue
            empty = 0
            for records in batch.values():
                for rec in records:
                    ids[dict(rec.headers)["message-id"].decode()] += 1
        return ids
    finally:
        consumer.close()


def final_state(settings: Settings) -> dict[str, Any]:
    """What must be identical between an interrupted-then-resumed run and a clean one."""
    counts = hub_counts(settings)
    platform = platform_records(settings)
    messages = broker_messages(settings)
    return {
        "extracted": counts["extracted"],
        "normalized": counts["normalized"],
        "quarantined": counts["quarantined"],
        "quarantined_by_reason": counts["quarantined_by_reason"],
        "license_versions": counts["license_versions"],
        "sealed": counts["sealed"],
        "delivered": counts["delivered"],
        "returned": counts["returned"],
        "pending": counts["pending"],
        "platform_versions": len(platform),
        "platform_distinct_versions": len(set(platform)),
        "messages_on_broker": sum(messages.values()),
        "distinct_messages_on_broker": len(messages),
    }


def validate_documents(settings: Settings, nss_dir: Path) -> int:
    """Every sealed PDF: pyHanko's validator (trusting the dev root) and pdfsig (NSS db
    trusting the dev root) must both report it valid. Returns how many were checked."""
    from signing.verify import verify_pdf

    root = settings.home / "pki" / "root.pem"
    db = f"sql:{nss_dir}"
    nss_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["certutil", "-N", "--empty-password", "-d", db], check=True, capture_output=True
    )
    subprocess.run(
        ["certutil", "-A", "-n", "ehub-dev-root", "-t", ",C,", "-i", str(root), "-d", db],
        check=True,
        capture_output=True,
    )
    pdfs = sorted((settings.out_dir / "licenses").glob("*.pdf"))
    for pdf in pdfs:
        report = verify_pdf(pdf.read_bytes(), [root])
        assert report.valid and report.intact and report.trusted, (pdf.name, report.reasons)
        assert report.covers_whole_document and report.digest_algorithm == "sha256"
        out = subprocess.run(
            ["pdfsig", "-nssdir", db, str(pdf)], capture_output=True, text=True, check=False
        ).stdout
        assert "Signature is Valid." in out, (pdf.name, out)
        assert "Certificate is Trusted." in out, (pdf.name, out)
        assert "Total document signed" in out and "ETSI.CAdES.detached" in out, out
    return len(pdfs)
