"""ehub.reports: the rejects report a department gets back (CSV with BOM, XLSX)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from openpyxl import load_workbook

from ehub import codelists
from ehub import quarantine as q
from ehub.errors import ConfigError
from ehub.reports import HEADERS, ReportScope, resolve_scope, write_rejects_report
from ehub.store.db import Store
from tests.ehub.quarantine_support import (
    HOUSING,
    HOUSING_DEPT,
    MR,
    MR_DEPT,
    MR_FILES,
    PERSON_ID,
    Seeded,
    add_quarantined,
    company,
    seed,
)

USCC_FIX = codelists.reason_fix("E_USCC_CHECK")[1]


@pytest.fixture
def store(store_url: str) -> Store:
    return Store(store_url)


@pytest.fixture
def seeded(store: Store) -> Seeded:
    return seed(store)


def test_xlsx_report_has_chinese_headers_masked_values_and_a_summary(
    store: Store, seeded: Seeded, tmp_path: Path
) -> None:
    (path,) = write_rejects_report(store, MR_DEPT, tmp_path, formats=("xlsx",))
    assert path.suffix == ".xlsx" and path.exists()
    assert not list(tmp_path.glob("*.part"))
    wb = load_workbook(path)
    assert wb.sheetnames == ["退回记录", "汇总"]
    ws = wb["退回记录"]
    rows = [[c.value for c in r] for r in ws.iter_rows()]
    assert rows[0] == ["来源", "记录标识", "字段", "源字段", "原因代码", "原因", "值", "修改建议"]
    assert all(c.font.b for c in ws[1])
    assert ws.freeze_panes == "A2"
    assert ws.column_dimensions["H"].width >= 40  # 修改建议
    body = rows[1:]
    assert len(body) == 7  # every open defect of the department's two sources, none of housing
    assert {r[0] for r in body} == {MR, MR_FILES}
    by_key_field = {(r[1], r[2]): r for r in body}
    uscc = by_key_field[("1001", "CZZTDM")]
    assert uscc[3] == "TYSHXYDM"  # the department's own column, from the source spec
    assert uscc[4] == "E_USCC_CHECK"
    assert uscc[5] == "CZZTDM：统一社会信用代码校验码错误"
    assert uscc[6] == "91370212315285741A"
    assert uscc[7] == USCC_FIX and "GB 32100" in uscc[7]
    person = by_key_field[("1002", "CZZTDM")]
    assert person[6] == "370102********1234" and PERSON_ID not in str(rows)
    assert by_key_field[("1002", "CZZT")][6] == "王" + "*" * 59
    formula = ws.cell(row=1 + body.index(by_key_field[("f-1", "KZ_ZS")]) + 1, column=7)
    assert formula.value == "=HYPERLINK(1)" and formula.data_type == "s"  # text, not a formula

    summary = [[c.value for c in r] for r in wb["汇总"].iter_rows()]
    assert summary[0] == ["原因代码", "原因", "记录数", "问题数", "修改建议"]
    got = {r[0]: (r[2], r[3]) for r in summary[1:]}
    assert got == {
        "E_CITIZEN_ID_CHECK": (1, 1),
        "E_DATE_INVALID": (1, 2),
        "E_ENCODING": (1, 1),
        "E_FIELD_TOO_LONG": (1, 1),
        "E_USCC_CHECK": (2, 2),
    }
    assert next(r for r in summary if r[0] == "E_USCC_CHECK")[1:5:3] == [
        "统一社会信用代码校验码错误",
        USCC_FIX,
    ]


def test_csv_report_is_utf8_with_bom_and_formula_safe(
    store: Store, seeded: Seeded, tmp_path: Path
) -> None:
    (path,) = write_rejects_report(store, HOUSING, tmp_path, formats=("csv",))
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(raw.decode("utf-8-sig").splitlines()))
    assert rows == [
        list(HEADERS),
        [
            HOUSING,
            "H-9",
            "CZZTQHDM",
            "areaCode",
            "E_DIVISION_UNKNOWN",
            "CZZTQHDM：行政区划代码不存在",
            "379999",
            codelists.reason_fix("E_DIVISION_UNKNOWN")[1],
        ],
    ]
    (files,) = write_rejects_report(store, ReportScope(source=MR_FILES), tmp_path, formats=("csv",))
    value = next(csv.reader(files.read_text(encoding="utf-8-sig").splitlines()[1:]))[6]
    assert value == "'=HYPERLINK(1)"


def test_both_formats_and_only_open_rows(store: Store, seeded: Seeded, tmp_path: Path) -> None:
    q.retry(store, raw_ids=[seeded.uscc])
    paths = write_rejects_report(store, ReportScope(department=MR_DEPT), tmp_path / "out")
    assert [p.suffix for p in paths] == [".csv", ".xlsx"]
    assert all(p.parent == tmp_path / "out" for p in paths)
    csv_rows = paths[0].read_text(encoding="utf-8-sig").splitlines()
    assert len(csv_rows) == 1 + 6  # the retried record is no longer reported
    assert not any(",1001," in r for r in csv_rows)
    xlsx_rows = list(load_workbook(paths[1])["退回记录"].iter_rows(values_only=True))
    assert len(xlsx_rows) == 1 + 6


def test_report_streams_more_rows_than_one_page(store: Store, tmp_path: Path) -> None:
    seed(store)
    for i in range(1100):  # more than one keyset page of iter_entries (1000)
        add_quarantined(
            store, HOUSING, f"bulk-{i:04d}", company(str(i)), [("E_CODE_UNKNOWN", "ZZZT", "9")]
        )
    csv_path, xlsx_path = write_rejects_report(store, HOUSING_DEPT, tmp_path)
    assert len(csv_path.read_text(encoding="utf-8-sig").splitlines()) == 1 + 1101
    ws = load_workbook(xlsx_path, read_only=True)["退回记录"]
    keys = [r[1] for r in ws.iter_rows(min_row=2, values_only=True)]
    assert len(keys) == 1101 and len(set(keys)) == 1101


def test_an_empty_report_still_has_its_headers(store: Store, tmp_path: Path) -> None:
    seed(store)
    q.retry(store, source=HOUSING)
    (path,) = write_rejects_report(store, HOUSING, tmp_path, formats=("xlsx",))
    wb = load_workbook(path)
    assert [[c.value for c in r] for r in wb["退回记录"].iter_rows()] == [list(HEADERS)]
    assert wb["汇总"].max_row == 1


def test_scope_resolution_and_bad_arguments(store: Store, seeded: Seeded, tmp_path: Path) -> None:
    assert resolve_scope(store, MR) == ReportScope(source=MR)
    assert resolve_scope(store, MR_DEPT) == ReportScope(department=MR_DEPT)
    with pytest.raises(ConfigError, match="neither a source nor a department"):
        resolve_scope(store, "山东省不存在厅")
    with pytest.raises(ConfigError):
        ReportScope()
    with pytest.raises(ConfigError):
        ReportScope(department=MR_DEPT, source=MR)
    with pytest.raises(ConfigError, match="formats"):
        write_rejects_report(store, MR, tmp_path, formats=("pdf",))  # type: ignore[arg-type]
