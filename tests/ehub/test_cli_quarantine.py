"""`ehub quarantine …` through click's CliRunner against a seeded hub store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from openpyxl import load_workbook

from ehub.cli import main
from ehub.errors import ConfigError
from ehub.store.db import Store
from tests.ehub.quarantine_support import HOUSING, MR, MR_DEPT, PERSON_ID, Seeded, seed


@pytest.fixture
def env(store_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "EHUB_DATABASE_URL": store_url,
        "EHUB_HOME": str(tmp_path / "home"),
        "COLUMNS": "250",
    }


@pytest.fixture
def seeded(store_url: str) -> Seeded:
    store = Store(store_url)
    try:
        return seed(store)
    finally:
        store.dispose()


def _run(env: dict[str, str], *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, ["quarantine", *args], env=env, input=input)


def test_list_show_counts(env: dict[str, str], seeded: Seeded) -> None:
    res = _run(env, "list", "--source", MR, "--limit", "2")
    assert res.exit_code == 0, res.output
    assert "E_USCC_CHECK" in res.output and "1001" in res.output
    assert "next page: --after" in res.output
    res = _run(env, "list", "--reason", "E_CITIZEN_ID_CHECK")
    assert res.exit_code == 0, res.output
    assert "370102********1234" in res.output and PERSON_ID not in res.output
    assert PERSON_ID in _run(env, "list", "--reason", "E_CITIZEN_ID_CHECK", "--reveal").output
    assert "no quarantined records match" in _run(env, "list", "--state", "resolved").output

    res = _run(env, "show", str(seeded.dates))
    assert res.exit_code == 0, res.output
    assert "ZZBFJGDM" in res.output and "GB 32100" in res.output and "quarantined" in res.output
    res = _run(env, "show", str(seeded.person), "--json")
    doc = json.loads(res.output)
    assert doc["department"] == MR_DEPT and doc["payload"]["ZJHM"] == "370102********1234"
    assert {e["reason_code"] for e in doc["errors"]} == {"E_CITIZEN_ID_CHECK", "E_FIELD_TOO_LONG"}
    assert all(e["fix_zh"] and e["fix_en"] for e in doc["errors"])
    res = _run(env, "show", "999999")
    assert res.exit_code == 1 and "not in the quarantine" in res.output

    res = _run(env, "counts", "--source", MR)
    assert res.exit_code == 0, res.output
    assert "E_DATE_INVALID" in res.output and HOUSING not in res.output


def test_retry_asks_for_confirmation_with_the_count(env: dict[str, str], seeded: Seeded) -> None:
    res = _run(env, "retry", "--reason", "E_USCC_CHECK", input="n\n")
    assert "Retry 2 records (4 open defects)?" in res.output
    assert res.exit_code == 1  # aborted: nothing changed
    assert "E_USCC_CHECK" in _run(env, "list", "--reason", "E_USCC_CHECK").output

    res = _run(env, "retry", "--reason", "E_USCC_CHECK", input="y\n")
    assert res.exit_code == 0, res.output
    assert "retried 2 records (4 defects)" in res.output
    listed = _run(env, "list", "--state", "retried", "--source", MR).output
    assert "1001" in listed and "1003" in listed

    res = _run(env, "retry", str(seeded.housing), "--yes")
    assert res.exit_code == 0 and "retried 1 records" in res.output
    res = _run(env, "retry", str(seeded.housing), "--yes")
    assert "nothing to retry" in res.output

    res = _run(env, "retry", "--reason", "E_NOPE", "--yes")
    assert isinstance(res.exception, ConfigError)


def test_report_command(env: dict[str, str], seeded: Seeded, tmp_path: Path) -> None:
    out = tmp_path / "reports"
    res = _run(env, "report", "--department", MR_DEPT, "--out", str(out), "--format", "xlsx")
    assert res.exit_code == 0, res.output
    (path,) = out.glob("*.xlsx")
    header = next(load_workbook(path)["退回记录"].iter_rows(values_only=True))
    assert header == ("来源", "记录标识", "字段", "源字段", "原因代码", "原因", "值", "修改建议")
    res = _run(env, "report", "--source", HOUSING, "--out", str(out))
    assert res.exit_code == 0, res.output
    assert len(list(out.glob("rejects-*"))) == 3
    res = _run(env, "report", "--out", str(out))
    assert res.exit_code == 2 and "exactly one of --department or --source" in res.output
