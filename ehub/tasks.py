"""Entry points that DAG tasks call: build settings and store, run one stage.

Airflow-free, so the same calls run from the CLI and the tests. Returns only
counts (what XCom may carry). Transient errors propagate so Airflow retries;
each stage is idempotent, so a retry never doubles an effect.

``extract`` and ``normalize`` work on one source, named by its id
(``<department>.<source>``); the spec is read from the sources folder when the
task runs, never at DAG parse time.
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

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
from ehub.sources.loader import find_spec, spec_files
from ehub.sources.spec import SourceSpec
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


_SPECS: dict[str, tuple[tuple[tuple[str, int, int], ...], SourceSpec]] = {}


def _spec(source_id: str) -> SourceSpec:
    """``find_spec(source_id)``, parsed once per process while the spec files stay the
    same (a task that runs extract and then normalize reads and validates it once)."""
    files = tuple((str(p), *_stamp(p.stat())) for p in spec_files())
    cached = _SPECS.get(source_id)
    if cached is None or cached[0] != files:
        cached = _SPECS[source_id] = (files, find_spec(source_id))
    return cached[1]


def _stamp(st: os.stat_result) -> tuple[int, int]:
    return st.st_mtime_ns, st.st_size


#: Objects allocated between two collections of the youngest generation during a stage.
STAGE_GC_THRESHOLD = 10_000


@contextmanager
def stage_gc() -> Iterator[None]:
    """Collect young garbage every :data:`STAGE_GC_THRESHOLD` new container objects while
    a stage runs, instead of every 700 (CPython's default), then restore the thresholds.

    A stage allocates tens of objects per record; at the default threshold the
    collector runs every few records and, every hundred runs, walks the whole heap
    (the imported modules: 0.1-0.2 s in a worker process). Garbage is still
    collected, just in larger steps, so memory stays bounded on any volume."""
    before = gc.get_threshold()
    if 0 < before[0] < STAGE_GC_THRESHOLD:
        gc.set_threshold(STAGE_GC_THRESHOLD, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


def run_stage(
    stage: str, settings: Settings | None = None, source_id: str | None = None
) -> dict[str, object]:
    with stage_gc():
        return _run_stage(stage, settings, source_id)


def _run_stage(stage: str, settings: Settings | None, source_id: str | None) -> dict[str, object]:
    settings = settings or Settings.from_env()
    store = Store(settings.database_url)
    try:
        store.migrate()
        if stage in SOURCE_STAGES:
            if not source_id:
                raise ValueError(f"stage {stage} needs a source id")
            result = SOURCE_STAGES[stage](settings, store, _spec(source_id))
        else:
            result = STAGES[stage](settings, store)
    finally:
        store.dispose()
    log.info("stage %s%s: %s", stage, f" [{source_id}]" if source_id else "", result.as_dict())
    return result.as_dict()
