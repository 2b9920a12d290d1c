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
        "deliver__national",
        "feed__return_to_locality",
        "return__provincial",
        "reconcile__platforms",
    } <= set(report["dags"])
    assert report["parse_s"] < 5, report["parse_s"]
    assert report["heavy"] == [], "DAG files import pipeline code at parse time"
    assert report["net"] == []


FACTORY_PROBE = r"""
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
print(json.dumps({"errors": sorted(bag.import_errors), "dags": sorted(bag.dag_ids)}))
"""


def _factory_dags(tmp_path: Path, sources: Path) -> dict[str, list[str]]:
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
        "EHUB_SOURCES_DIR": str(sources),
    }
    out = subprocess.run(
        [sys.executable, "-c", FACTORY_PROBE, str(REPO / "dags" / "ingest_sources.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_adding_a_spec_adds_its_dag_and_removing_it_removes_it(tmp_path: Path) -> None:
    sources = tmp_path / "sources"
    (sources / "dept").mkdir(parents=True)
    spec = (REPO / "sources" / "market_regulation" / "business_licenses.yaml").read_text("utf-8")
    assert _factory_dags(tmp_path, sources)["dags"] == []
    (sources / "dept" / "a.yaml").write_text(spec, "utf-8")
    (sources / "dept" / "b.yaml").write_text(
        spec.replace("source: business_licenses", "source: branch_licenses"), "utf-8"
    )
    assert _factory_dags(tmp_path, sources)["dags"] == [
        "ingest__market_regulation__branch_licenses",
        "ingest__market_regulation__business_licenses",
    ]
    (sources / "dept" / "b.yaml").unlink()
    (sources / "dept" / "broken.yaml").write_text("department: [unclosed\n", "utf-8")
    report = _factory_dags(tmp_path, sources)
    # A spec that cannot be read shows up as a failing DAG; the others are unaffected.
    assert report == {
        "errors": [],
        "dags": ["ingest__invalid_spec__broken", "ingest__market_regulation__business_licenses"],
    }
