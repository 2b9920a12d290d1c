"""DAG integrity: no import errors, quick parse, no pipeline imports or I/O at parse time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

PROBE = r"""
import json, sys, time, socket
calls = []
real_connect = socket.socket.connect
def guard(self, *a, **k):
    calls.append(repr(a))
    raise RuntimeError("network I/O at DAG parse time")
socket.socket.connect = guard
t = time.monotonic()
from airflow.dag_processing.dagbag import DagBag
t_import = time.monotonic()
bag = DagBag(dag_folder=sys.argv[1])
t_parse = time.monotonic() - t_import
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("signing", "connectors", "kafka", "pyhanko")
               or m.startswith("ehub.pipeline"))
print(json.dumps({"errors": {k: v[-300:] for k, v in bag.import_errors.items()},
                  "dags": sorted(bag.dag_ids), "parse_s": t_parse, "heavy": heavy, "net": calls}))
"""


def test_dagbag_parses_cleanly_quickly_and_without_io(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
        "EHUB_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none",
    }
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(REPO / "dags")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["errors"] == {}
    assert {
        "ingest__market_regulation__business_licenses",
        "seal__licenses",
        "deliver__provincial",
        "feed__return_to_locality",
    } <= set(report["dags"])
    assert report["parse_s"] < 5, report["parse_s"]
    assert report["heavy"] == [], "DAG files import pipeline code at parse time"
    assert report["net"] == []
