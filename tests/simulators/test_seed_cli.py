"""``python -m simulators case-records | file-drop | market-regulation``: JSON reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "simulators", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    data: dict[str, Any] = json.loads(out.stdout)
    return data


def test_case_records_command(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ycsl.db'}"
    report = run(
        "case-records", "--url", url, "--count", "100", "--defect-rate", "0.2", "--seed", "3"
    )
    assert report["count"] == 100 and report["defective"] == 20
    assert sum(report["expected"].values()) == 20 and "defective_keys" not in report
    full = run(
        "case-records",
        "--url",
        url,
        "--count",
        "100",
        "--defect-rate",
        "0.2",
        "--seed",
        "3",
        "--with-ids",
    )
    assert full["expected"] == report["expected"]
    keys = full["defective_keys"]
    assert {k: len(v) for k, v in keys.items()} == report["expected"]
    assert all(isinstance(i, int) for ids in keys.values() for i in ids)


def test_file_drop_command(tmp_path: Path) -> None:
    report = run(
        "file-drop",
        "--folder",
        str(tmp_path / "in"),
        "--count",
        "60",
        "--files",
        "3",
        "--defect-rate",
        "0.25",
        "--seed",
        "2",
        "--delivery-date",
        "2024-03-05",
        "--with-keys",
    )
    assert report["count"] == 60 and report["defective"] == 15
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == [
        f"WJW_20240305_000{i}.xml" for i in (1, 2, 3)
    ]
    assert all(k.startswith("WJW") for ks in report["defective_keys"].values() for k in ks)
    hostile = run("file-drop", "--folder", str(tmp_path / "bad"), "--hostile")["hostile"]
    assert set(hostile) == {"xxe", "billion_laughs", "truncated", "bad_encoding"}
    assert all(Path(p).is_file() for p in hostile.values())


def test_market_regulation_report_has_expected_and_keys(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'scjg.db'}"
    report = run(
        "market-regulation", "--url", url, "--count", "100", "--defect-rate", "0.2", "--with-ids"
    )
    assert report["expected"] == report["defects"] and report["defective"] == 20
    assert {k: len(v) for k, v in report["defective_keys"].items()} == report["expected"]
    assert len(report["defective_ids"]) == 20
