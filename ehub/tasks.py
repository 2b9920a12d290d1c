"""Entry points that DAG tasks call: build settings and store, run one stage.

Airflow-free, so the same calls run from the CLI and the tests. Returns only
counts (what XCom may carry). Transient errors propagate so Airflow retries;
each stage is idempotent, so a retry never doubles an effect.

``extract`` and ``normalize`` work on one source, named by its id
(``<department>.<source>``); the spec is read from the sources folder when the
task runs, never at DAG parse time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ehub import audit_checkpoint
from ehub.config import Settings
from ehub.pipeline import (
    StageResult,
    deliver,
    extract,
    normalize,
    publish,
    reconcile,
    returns,
    seal,
)
from ehub.sources.loader import find_spec
from ehub.store.db import Store

log = logging.getLogger(__name__)
# httpx logs every URL with its query (lookup keys, cursors): keep it to warnings.
logging.getLogger("httpx").setLevel(logging.WARNING)

STAGES: dict[str, Callable[[Settings, Store], StageResult]] = {
    "seal": seal.run,
    "deliver": deliver.run,
    "deliver_national": deliver.run_national,
    "publish": publish.run,
    "return_intake": returns.run,
    "reconcile": reconcile.run,
    "checkpoint": audit_checkpoint.run,
}
SOURCE_STAGES = {"extract": extract.run, "normalize": normalize.run}


def run_stage(
    stage: str, settings: Settings | None = None, source_id: str | None = None
) -> dict[str, object]:
    settings = settings or Settings.from_env()
    store = Store(settings.database_url)
    try:
        store.migrate()
        if stage in SOURCE_STAGES:
            if not source_id:
                raise ValueError(f"stage {stage} needs a source id")
            result = SOURCE_STAGES[stage](settings, store, find_spec(source_id))
        else:
            result = STAGES[stage](settings, store)
    finally:
        store.dispose()
    log.info("stage %s%s: %s", stage, f" [{source_id}]" if source_id else "", result.as_dict())
    return result.as_dict()
