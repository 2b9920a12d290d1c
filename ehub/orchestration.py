"""Running the hub's DAGs through Airflow from the CLI, the demo and the tests.

Builds the environment of an embedded Airflow (SQLite metadata database under
``$EHUB_HOME/airflow``, the repository's ``dags/`` and ``plugins/``), migrates
its metadata database once, and runs DAGs with ``dag.test()`` in a child
process (``python -m ehub.airflow_run``) so that Airflow's configuration is
read from that environment and a killed run leaves the caller intact.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ehub.config import Settings
from ehub.errors import HubError
from ehub.sources.loader import default_sources_dir

REPO = Path(__file__).resolve().parent.parent

INGEST_DAG = "ingest__market_regulation__business_licenses"
SEAL_DAG = "seal__licenses"
DELIVER_DAG = "deliver__provincial"
DELIVER_NATIONAL_DAG = "deliver__national"
FEED_DAG = "feed__return_to_locality"
RETURN_DAG = "return__provincial"
AFTER_INGEST = (SEAL_DAG, DELIVER_DAG, DELIVER_NATIONAL_DAG, FEED_DAG, RETURN_DAG)
JOURNEY = (INGEST_DAG, *AFTER_INGEST)


def journey(sources_dir: Path | None = None) -> tuple[str, ...]:
    """Every source's ingest DAG, then sealing, delivery and return feeds."""
    from ehub.sources.loader import load_all

    return (*(s.dag_id for s in load_all(sources_dir)), *AFTER_INGEST)


class AirflowRunError(HubError):
    """A DAG run did not succeed."""


def dags_folder() -> Path:
    return Path(os.environ.get("EHUB_DAGS_FOLDER", REPO / "dags"))


def airflow_env(settings: Settings) -> dict[str, str]:
    home = settings.home / "airflow"
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder()),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": os.environ.get(
                "AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING"
            ),
            "EHUB_HOME": str(settings.home),
            "EHUB_DATABASE_URL": settings.database_url,
            "EHUB_OUT_DIR": str(settings.out_dir),
            "EHUB_BATCH_SIZE": str(settings.batch_size),
            "EHUB_SOURCE_BATCH_SIZE": str(settings.source_batch_size),
            "EHUB_SOURCES_DIR": str(default_sources_dir()),
        }
    )
    # Airflow starts its components as `airflow …` from PATH: use this environment's.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    for name in (
        "broker",
        "provincial_url",
        "national_url",
        "market_regulation_url",
        "platform_ca_bundle",
        "platform_client_cert",
        "platform_client_key",
    ):
        value = getattr(settings, name)
        if value:
            env["EHUB_" + name.upper()] = value
    if settings.fault:
        env["EHUB_FAULT"] = settings.fault
    return env


def ensure_airflow_db(settings: Settings) -> None:
    """``airflow db migrate`` once per embedded Airflow home."""
    home = settings.home / "airflow"
    marker = home / ".migrated"
    if marker.exists():
        return
    home.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(
        [str(Path(sys.executable).with_name("airflow")), "db", "migrate"],
        env=airflow_env(settings),
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise AirflowRunError(
            f"airflow db migrate failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
        )
    marker.touch()


@dataclass(frozen=True)
class DagRunResult:
    dag_id: str
    state: str
    tasks: dict[str, Any]


def run_dags(
    settings: Settings, dag_ids: Sequence[str], *, timeout: float = 1800
) -> list[DagRunResult]:
    """Run DAGs one after another through Airflow (one process); raise if one does not succeed."""
    ensure_airflow_db(settings)
    proc = subprocess.run(
        [sys.executable, "-m", "ehub.airflow_run", *dag_ids],
        env=airflow_env(settings),
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
    _keep_log(settings, dag_ids, proc.stdout, proc.stderr)
    reports = []
    for line in proc.stdout.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and "dag_id" in obj and "state" in obj:
            reports.append(obj)
    results = [DagRunResult(r["dag_id"], r["state"], r.get("tasks", {})) for r in reports]
    if (
        proc.returncode != 0
        or len(results) != len(dag_ids)
        or any(r.state != "success" for r in results)
    ):
        done = {r.dag_id for r in results if r.state == "success"}
        failed = next((d for d in dag_ids if d not in done), dag_ids[-1])
        error = next((r.get("error") for r in reports if r["dag_id"] == failed), None)
        raise AirflowRunError(
            f"DAG {failed} did not succeed (exit {proc.returncode}): {error or 'process ended early'}\n"
            + _error_lines(proc.stdout + proc.stderr)
        )
    return results


def _keep_log(settings: Settings, dag_ids: Sequence[str], stdout: str, stderr: str) -> None:
    """The DAG runs' task logs (``dag.test()`` logs to the process' output), appended to
    ``<home>/airflow/logs/dag_runs.log`` for operators (and the log scans)."""
    logs = settings.home / "airflow" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / "dag_runs.log", "a", encoding="utf-8") as fh:
        fh.write(f"=== {' '.join(dag_ids)}\n{stdout}\n{stderr}\n")


def _error_lines(output: str, limit: int = 12) -> str:
    """The log lines that say what went wrong (Airflow logs tasks to stdout)."""
    keys = ("error", "Error", "Exception", "Traceback")
    lines = [ln.strip()[:400] for ln in output.splitlines() if any(k in ln for k in keys)]
    return "\n".join(lines[-limit:])
