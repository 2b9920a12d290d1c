"""The license journey: ingest (extract → normalize → seal), delivery, return feeds.

Thin DAG file: no I/O and no heavy imports at parse time; every task imports
:mod:`ehub.tasks` when it runs. XCom carries counts only. Each task is
idempotent — a retry after a crash at any point gives the same store, platform
and feed contents (see ``ehub.pipeline``).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Asset, dag, task

SEALED_LICENSES = Asset("ehub://store/licenses/sealed")

#: What every journey DAG shares: one run at a time, retries with backoff.
COMMON = {
    "start_date": pendulum.datetime(2026, 1, 1, tz="Asia/Shanghai"),
    "catchup": False,
    "max_active_runs": 1,
    "default_args": {
        "owner": "ehub",
        "retries": 2,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": True,
    },
}


def _stage(name: str) -> dict[str, object]:
    """Run one pipeline stage; a Terminal error fails the task without retries."""
    from airflow.sdk.exceptions import AirflowFailException

    from ehub.errors import Terminal
    from ehub.tasks import run_stage
    from ehub_hooks import EhubHook

    try:
        return run_stage(name, EhubHook().get_settings())
    except Exception as exc:
        if isinstance(exc, Terminal):
            raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc
        raise


@dag(
    dag_id="ingest__market_regulation__business_licenses",
    schedule="@hourly",
    **COMMON,
    tags=["ehub", "ingest", "license"],
    doc_md="Business licenses from the market-regulation database: extract, normalize "
    "(defects to quarantine), seal (PAdES).",
)
def ingest_market_regulation():
    @task(doc="Retry: resumes from the stored watermark; rows read twice are stored once.")
    def extract() -> dict[str, object]:
        return _stage("extract")

    @task(doc="Retry: only raw rows still pending are processed.")
    def normalize() -> dict[str, object]:
        return _stage("normalize")

    @task(outlets=[SEALED_LICENSES], doc="Retry: only licenses not yet sealed are sealed.")
    def seal() -> dict[str, object]:
        return _stage("seal")

    extract() >> normalize() >> seal()


@dag(
    dag_id="deliver__provincial",
    schedule=[SEALED_LICENSES],
    **COMMON,
    tags=["ehub", "delivery"],
    doc_md="Sealed licenses to the provincial platform, with idempotency keys and receipts.",
)
def deliver_provincial():
    @task(doc="Retry: re-sends pending items with the same idempotency keys; no double insert.")
    def deliver() -> dict[str, object]:
        return _stage("deliver")

    deliver()


@dag(
    dag_id="feed__return_to_locality",
    schedule=[SEALED_LICENSES],
    **COMMON,
    tags=["ehub", "feeds"],
    doc_md="Each sealed license version to the return topic of its county.",
)
def feed_return():
    @task(doc="Retry: in-flight messages are looked up on the broker before re-publishing.")
    def publish() -> dict[str, object]:
        return _stage("publish")

    publish()


ingest_market_regulation()
deliver_provincial()
feed_return()
