"""The acceptance system's case records: determinism, defects, coherence, PostgreSQL."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select, text

from simulators import case_data as cv
from simulators import market_data
from simulators.case_records import (
    DEFECT_KINDS,
    cases_table,
    drop,
    generate,
    item_rows,
    items_table,
    iter_rows,
    plan,
    truncate,
)
from simulators.checks import (
    FIELD_LIMIT,
    citizen_id_is_valid,
    has_mojibake,
    is_blank,
    parse_timestamp,
    repeat_defects,
    uscc_is_valid,
)
from tests.simulators.memory import peak_rss_mib

CODELISTS = Path(__file__).resolve().parents[2] / "schemas" / "codelists"
KNOWN = {c["code"] for c in json.loads((CODELISTS / "divisions_37.json").read_text())["codes"]}
TIMES = ("SBSJ", "SLSJ", "SPSJ", "BJSJ")
DEPARTMENT_LISTS = {
    "SQRLX": cv.APPLICANT_TYPES,
    "SQRZJLX": cv.APPLICANT_CODE_TYPES,
    "SBQD": cv.CHANNELS,
    "BJZT": cv.STATES,
    "BJLX": cv.CASE_TYPES,
}


def defects_of(row: dict[str, Any]) -> set[str]:
    """Single-row reasons, from independent checks."""
    found: set[str] = set()
    if is_blank(row["SQRMC"]) or is_blank(row["SSBM"]):
        found.add("E_REQUIRED_MISSING")
    elif len(row["SQRMC"].strip()) > FIELD_LIMIT:
        found.add("E_FIELD_TOO_LONG")
    if has_mojibake(row["SQRMC"]):
        found.add("E_ENCODING")
    if row["SQRZJLX"] == "SFZ" and not citizen_id_is_valid(row["SQRZJHM"]):
        found.add("E_CITIZEN_ID_CHECK")
    if row["SQRZJLX"] == "TYXYDM" and not uscc_is_valid(row["SQRZJHM"]):
        found.add("E_USCC_CHECK")
    if any(row[c] is not None and parse_timestamp(row[c]) is None for c in TIMES):
        found.add("E_DATE_INVALID")
    if any(row[c] not in codes for c, codes in DEPARTMENT_LISTS.items()):
        found.add("E_CODE_UNKNOWN")
    if row["BJJG"] is not None and row["BJJG"] not in cv.RESULTS:
        found.add("E_CODE_UNKNOWN")
    if row["XZQHDM"] not in KNOWN:
        found.add("E_DIVISION_UNKNOWN")
    return found


def classify(rows: list[dict[str, Any]]) -> dict[int, set[str]]:
    """Row ID → reasons, repeats included (cursor order; natural key SBLSH)."""
    found = {r["ID"]: defects_of(r) for r in rows}
    in_order = sorted((r for r in rows if not found[r["ID"]]), key=lambda r: (r["GXSJ"], r["ID"]))
    content = [
        (r["ID"], r["SBLSH"], tuple(v for k, v in r.items() if k not in {"ID", "GXSJ"}))
        for r in in_order
    ]
    for row_id, reason in repeat_defects(content).items():
        found[row_id].add(reason)
    return found


def read(url: str, table: Any = cases_table) -> list[dict[str, Any]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            order = table.c.ID if "ID" in table.c else table.c.SSBM
            return [dict(r._mapping) for r in conn.execute(select(table).order_by(order))]
    finally:
        engine.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ycsl.db'}"


def test_deterministic_per_seed(sqlite_url: str, tmp_path: Path) -> None:
    first = generate(sqlite_url, count=400, defect_rate=0.1, seed=7)
    rows = read(sqlite_url)
    other = f"sqlite:///{tmp_path / 'again.db'}"
    assert generate(other, count=400, defect_rate=0.1, seed=7) == first
    assert read(other) == rows == list(iter_rows(400, defect_rate=0.1, seed=7))
    different = list(iter_rows(400, defect_rate=0.1, seed=8))
    assert sum(a != b for a, b in zip(rows, different, strict=True)) > 350


def test_report_matches_rows_and_each_defect_is_alone(sqlite_url: str) -> None:
    report = generate(sqlite_url, count=3000, defect_rate=0.1, seed=3)
    rows = read(sqlite_url)
    assert report.count == len(rows) == 3000
    assert report.expected == dict.fromkeys(DEFECT_KINDS, 30)
    json.dumps(report.to_dict(include_keys=True))
    wanted = report.reason_of()
    found = classify(rows)
    for row in rows:
        expected = wanted.get(row["ID"])
        assert found[row["ID"]] == ({expected} if expected else set()), (row, expected)
    by_id = {r["ID"]: r for r in rows}
    for repeat, original in plan(3000, 0.1, 3).originals.items():
        a, b = by_id[original], by_id[repeat]
        differs = {k for k in a if a[k] != b[k]} - {"ID", "GXSJ"}
        assert differs == (set() if wanted[repeat] == "E_DUPLICATE" else {"SBQD"})
        assert original < repeat and a["GXSJ"] < b["GXSJ"]


def test_clean_rows_are_coherent(sqlite_url: str) -> None:
    generate(sqlite_url, count=3000, defect_rate=0.0, seed=11)
    rows = read(sqlite_url)
    items = {r["SSBM"]: r for r in read(sqlite_url, items_table)}
    assert len(items) == len(market_data.COUNTIES) * len(cv.ITEMS)
    gxsj = [r["GXSJ"] for r in rows]
    assert gxsj == sorted(gxsj) and len(set(gxsj)) == len(gxsj)
    assert len({r["SBLSH"] for r in rows}) == len(rows)
    assert not any(classify(rows).values())
    for r in rows:
        item = items[r["SSBM"]]
        assert uscc_is_valid(item["SSJGDM"]) and r["SSBM"].startswith(item["SSJGDM"])
        assert item["XZQHDM"] == r["XZQHDM"] and len(r["SSBM"]) == 31
        submitted = datetime.strptime(r["SBSJ"], "%Y-%m-%d %H:%M:%S")
        assert r["SBLSH"] == r["SSBM"] + f"{submitted:%Y%m%d}" + r["SBLSH"][-4:]
        assert len(r["SBLSH"]) == 43 and r["SBLSH"][-4:].isdigit()
        times = [r[c] for c in TIMES if r[c] is not None]
        assert times == sorted(times) and times[-1] <= r["GXSJ"], r
        state = r["BJZT"]
        if state in {"20", "30", "40"}:
            assert r["SLSJ"] is not None
        elif state in {"10", "21"}:
            assert r["SLSJ"] is None
        assert (r["BJJG"] is not None) == (state == "40")
        assert (r["BJSJ"] is not None) == (state in {"21", "40"})
        assert (r["SPSJ"] is not None) == (state == "30" or (state == "40" and r["BJJG"] != "3"))
        assert r["JGZZBH"] is None or (state == "40" and r["BJJG"] == "1")
        assert (r["SQRLX"], r["SQRZJLX"]) in {("1", "SFZ"), ("2", "TYXYDM")}
        assert (r["BJLX"] == "JB") == (r["CNBJSX"] == 0) and r["FDBJSX"] > 0
        assert len(r["LXRSJ"]) == 11 and r["LXRSJ"].startswith("1")
    states = Counter(r["BJZT"] for r in rows)
    assert set(states) == set(cv.STATES) and set(Counter(r["SBQD"] for r in rows)) == set(
        cv.CHANNELS
    )


def test_department_codes_differ_from_canonical_and_translate_onto_them() -> None:
    canonical_files = {
        "SQRLX": "applicant_types",
        "SQRZJLX": "holder_code_types",
        "SBQD": "channels",
        "BJZT": "case_states",
        "BJJG": "case_results",
        "BJLX": "case_types",
    }
    for column, name in canonical_files.items():
        data = json.loads((CODELISTS / f"{name}.json").read_text("utf-8"))
        canonical = {c["code"] for c in data["codes"]}
        department = {**DEPARTMENT_LISTS, "BJJG": cv.RESULTS}[column]
        mapping = cv.CANONICAL[column]
        assert set(mapping) == set(department) and set(mapping.values()) <= canonical
        assert len(set(mapping.values())) == len(mapping)
        assert set(department) != canonical, column
        assert any(code != mapping[code] for code in department)


def test_truncate_and_drop(sqlite_url: str) -> None:
    generate(sqlite_url, count=20, seed=1)
    truncate(sqlite_url)
    assert read(sqlite_url) == [] and len(read(sqlite_url, items_table)) > 0
    drop(sqlite_url)
    drop(sqlite_url)


def test_hundred_thousand_rows_stream_in_flat_memory(tmp_path: Path) -> None:
    def run(count: int) -> float:
        url = f"sqlite:///{tmp_path / f'big{count}.db'}"
        return peak_rss_mib(
            "from simulators.case_records import generate\n"
            f"r = generate({url!r}, count={count}, defect_rate=0.05, seed=2)\n"
            f"assert r.count == {count} and r.defective == {count // 20}"
        )

    small, big = run(10_000), run(100_000)
    assert big < small + 20, f"10k rows: {small:.0f} MiB, 100k rows: {big:.0f} MiB"


@pytest.mark.postgres
def test_postgresql_variant(pg_url: str, sqlite_url: str) -> None:
    report = generate(pg_url, count=1500, defect_rate=0.1, seed=9)
    rows = read(pg_url)
    generate(sqlite_url, count=1500, defect_rate=0.1, seed=9)
    assert rows == read(sqlite_url)
    wanted = report.reason_of()
    found = classify(rows)
    assert all(found[r["ID"]] == ({wanted[r["ID"]]} if r["ID"] in wanted else set()) for r in rows)
    engine = create_engine(pg_url)
    with engine.connect() as conn:  # legacy upper-case names are stored case-sensitively
        joined = conn.execute(
            text(
                'SELECT COUNT(*) FROM "T_YCSL_BJXX" b JOIN "T_SXML" s ON s."SSBM" = b."SSBM"'
                ' WHERE b."GXSJ" > :c'
            ),
            {"c": rows[99]["GXSJ"]},
        ).scalar_one()
    engine.dispose()
    missing_item = sum(1 for r in rows[100:] if is_blank(r["SSBM"]))
    assert joined == 1400 - missing_item
    assert len(list(item_rows())) == len(read(pg_url, items_table))
    drop(pg_url)
