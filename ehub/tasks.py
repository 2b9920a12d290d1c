"""Entry points that DAG tasks call: build settings and store, run one stage.

Airflow-free, so the same calls run from the CLI and the tests. Returns only
counts (what XCom may carry). Transient errors propagate so Airflow retries;
each stage is idempotent, so a retry never doubles an effect.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ehub.config import Settings
from ehub.pipeline import StageResult, deliver, extract, normalize, publish, seal
from ehub.store.db import Store

log = logging.getLogger(__name__)

STAGES: dict[str, Callable[[Settings, Store], StageResult]] = {
    "extract": extract.run,
    "normalize": normalize.run,
    "seal": seal.run,
    "deliver": deliver.run,
    "publish": publish.run,
}


def run_stage(stage: str, settings: Settings | None = None) -> dict[str, object]:
    settings = settings or Settings.from_env()
    store = Store(settings.database_url)
    try:
        store.migrate()
        result = STAGES[stage](settings, store)
    finally:
        store.dispose()
    log.info("stage %s: %s", stage, result.as_dict())
    return result.as_dict()
