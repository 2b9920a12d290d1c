"""DAG factory: one ingest DAG per source spec (``ingest__<department>__<source>``).

Reads only the spec files' top-level keys with a YAML parser at parse time —
no database, no network, no heavy imports — so adding a spec adds a DAG and
removing it removes it. The spec is validated fully when a task runs (and by
``ehub source validate``); a spec that does not parse becomes an import error
naming the file, and the other sources' DAGs are unaffected.
"""

from __future__ import annotations

import os
from pathlib import Path

import pendulum
import yaml
from airflow.sdk import Asset, dag, task
from ehub_dag_common import COMMON, NORMALIZED_CASES, NORMALIZED_LICENSES, run_stage_task

SOURCES_DIR = Path(
    os.environ.get("EHUB_SOURCES_DIR") or Path(__file__).resolve().parent.parent / "sources"
)


def _ingest_dag(path: Path, doc: dict) -> None:
    dept = doc["department"]["code"]
    source = doc["source"]
    source_id = f"{dept}.{source}"
    outlet: Asset = NORMALIZED_LICENSES if doc.get("record_kind") == "license" else NORMALIZED_CASES

    @dag(
        dag_id=f"ingest__{dept}__{source}",
        schedule=doc.get("schedule", "@hourly"),
        start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Shanghai"),
        **COMMON,
        tags=["ehub", "ingest", str(doc.get("kind", "")), str(doc.get("record_kind", "")), dept],
        doc_md=f"{doc['department'].get('name', dept)} — {doc.get('description') or source}\n\n"
        f"Spec: `{path.name}`. Extract (watermark after commit) → normalize "
        "(defects to quarantine with reason codes).",
    )
    def ingest() -> None:
        @task(doc="Retry: resumes from the stored watermark; a record read twice is stored once.")
        def extract() -> dict[str, object]:
            return run_stage_task("extract", source_id)

        @task(outlets=[outlet], doc="Retry: only raw records still pending are processed.")
        def normalize() -> dict[str, object]:
            return run_stage_task("normalize", source_id)

        extract() >> normalize()

    ingest()


def _invalid_spec_dag(path: Path, error: str) -> None:
    """A spec that cannot even be read shows up as a failing DAG naming the file."""
    stem = "".join(c if c.isalnum() else "_" for c in path.stem)

    @dag(
        dag_id=f"ingest__invalid_spec__{stem}",
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Shanghai"),
        **COMMON,
        tags=["ehub", "ingest", "invalid-spec"],
        doc_md=f"The source spec `{path}` cannot be read: {error}",
    )
    def invalid() -> None:
        @task(doc="Always fails: fix the spec (`ehub source validate FILE`).")
        def spec_error() -> None:
            raise ValueError(f"source spec {path} cannot be read: {error}")

        spec_error()

    invalid()


for _path in sorted(SOURCES_DIR.rglob("*.yaml")):
    try:
        _doc = yaml.safe_load(_path.read_text(encoding="utf-8"))
        _doc["department"]["code"], _doc["source"]
    except Exception as _exc:  # one bad spec must not hide the other sources' DAGs
        _invalid_spec_dag(_path, f"{type(_exc).__name__}: {_exc}")
        continue
    _ingest_dag(_path, _doc)
