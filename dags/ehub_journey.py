"""The license journey after ingest: seal, delivery, return feeds.

Thin DAG file: no I/O and no heavy imports at parse time. Ingest DAGs (one per
source spec, see ``ingest_sources.py``) update the normalized-licenses asset;
sealing follows it, delivery and return feeds follow the sealed asset. XCom
carries counts only; every task is idempotent.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, dag, task
from ehub_dag_common import (
    COMMON,
    NORMALIZED_CASES,
    NORMALIZED_LICENSES,
    SEALED_LICENSES,
    run_stage_task,
)

START = pendulum.datetime(2026, 1, 1, tz="Asia/Shanghai")


@dag(
    dag_id="seal__licenses",
    schedule=[NORMALIZED_LICENSES],
    start_date=START,
    **COMMON,
    tags=["ehub", "seal", "license"],
    doc_md="Every normalized license version rendered to PDF and sealed (PAdES).",
)
def seal_licenses():
    @task(outlets=[SEALED_LICENSES], doc="Retry: only licenses not yet sealed are sealed.")
    def seal() -> dict[str, object]:
        return run_stage_task("seal")

    seal()


def _delivery_dag(destination: str, stage: str, what: str):
    @dag(
        dag_id=f"deliver__{destination}",
        # New sealed licenses or case records trigger a run at once; the sweep every
        # 10 minutes sends what an earlier run left (a platform that was down, a
        # seal registration, a re-driven dead letter, a reconciliation re-queue).
        schedule=AssetOrTimeSchedule(
            timetable=CronTriggerTimetable("*/10 * * * *", timezone="Asia/Shanghai"),
            assets=(SEALED_LICENSES | NORMALIZED_CASES),
        ),
        start_date=START,
        **COMMON,
        tags=["ehub", "delivery"],
        doc_md=f"Pending outbox rows to the {destination} platform ({what}), with "
        "idempotency keys, receipts, dead letters and a circuit breaker.",
    )
    def deliver_dag():
        @task(doc="Retry: re-sends pending items with the same idempotency keys; no double insert.")
        def deliver() -> dict[str, object]:
            return run_stage_task(stage)

        deliver()

    return deliver_dag()


@dag(
    dag_id="feed__return_to_locality",
    schedule=(SEALED_LICENSES | NORMALIZED_CASES),
    start_date=START,
    **COMMON,
    tags=["ehub", "feeds"],
    doc_md="Each sealed license version and normalized case record version to the return "
    "topic of every office whose jurisdiction holds it, in that office's view.",
)
def feed_return():
    @task(doc="Retry: in-flight messages are looked up on the broker before re-publishing.")
    def publish() -> dict[str, object]:
        return run_stage_task("publish")

    publish()


@dag(
    dag_id="reconcile__platforms",
    schedule="0 1 * * *",  # 01:00 China Standard Time: yesterday is complete
    start_date=START,
    **COMMON,
    tags=["ehub", "delivery", "reconciliation"],
    doc_md="Yesterday's delivered sets against each platform's reports, per kind (count + "
    "digest); missing versions re-queued with their idempotency keys, unknown ones flagged; "
    "licenses cross-checked against case records; then a signed, timestamped checkpoint of the "
    "audit chain. On demand: `ehub reconcile --date D`, `ehub audit checkpoint`.",
)
def reconcile_platforms():
    @task(doc="Retry: re-reading both sides is harmless; a re-queued row is sent once.")
    def reconcile() -> dict[str, object]:
        return run_stage_task("reconcile")

    @task(doc="A signed, timestamped checkpoint of the audit chain (retry: one more checkpoint).")
    def checkpoint() -> dict[str, object]:
        return run_stage_task("checkpoint")

    reconcile() >> checkpoint()


@dag(
    dag_id="return__provincial",
    schedule=CronTriggerTimetable("*/15 * * * *", timezone="Asia/Shanghai"),
    start_date=START,
    **COMMON,
    tags=["ehub", "feeds", "return"],
    doc_md="The provincial platform's return interface (属地返还): other departments' license "
    "and case versions read from the cursor of each division prefix (EHUB_RETURN_DIVISIONS), "
    "routed to the offices of their jurisdiction and published to their feeds.",
)
def return_provincial():
    @task(doc="Retry: the page is re-read from the stored cursor; unique keys make it a no-op.")
    def intake() -> dict[str, object]:
        return run_stage_task("return_intake")

    @task(doc="Retry: in-flight messages are looked up on the broker before re-publishing.")
    def publish() -> dict[str, object]:
        return run_stage_task("publish")

    intake() >> publish()


seal_licenses()
_delivery_dag("provincial", "deliver", "licenses with their sealed PDFs, case records")
_delivery_dag(
    "national", "deliver_national", "seal registrations, license catalog entries, case records"
)
feed_return()
return_provincial()
reconcile_platforms()
