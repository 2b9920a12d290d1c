"""The market-regulation department simulator: determinism, defects, versions, PostgreSQL."""

from __future__ import annotations

import json
import secrets
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, select, text

from simulators import market_data
from simulators.checks import (
    FIELD_LIMIT,
    has_mojibake,
    parse_legacy_date,
    repeat_defects,
    uscc_is_valid,
)
from simulators.market_regulation import (
    DEFECT_KINDS,
    drop,
    generate,
    iter_rows,
    licenses_table,
    mutate,
    plan,
    truncate,
)
from tests.conftest import require_or_skip
from tests.simulators.memory import peak_rss_mib

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
DIVISIONS_FILE = Path(__file__).resolve().parents[2] / "schemas" / "codelists" / "divisions_37.json"


def known_divisions() -> set[str]:
    """The hub's division code list when it exists (so the two sides agree), else our own."""
    if DIVISIONS_FILE.is_file():
        return {c["code"] for c in json.loads(DIVISIONS_FILE.read_text("utf-8"))["codes"]}
    return {c.code for c in market_data.COUNTIES} | set(market_data.CITY_NAMES)


KNOWN = known_divisions()


def defects_of(row: dict[str, Any]) -> set[str]:
    """Classify a row with independent checks, the way the hub is expected to."""
    found: set[str] = set()
    if not uscc_is_valid(row["TYSHXYDM"]):
        found.add("E_USCC_CHECK")
    established = parse_legacy_date(row["CLRQ"])
    issued = parse_legacy_date(row["FZRQ"])
    if established is None or issued is None:
        found.add("E_DATE_INVALID")
    if row["XZQHDM"] not in KNOWN:
        found.add("E_DIVISION_UNKNOWN")
    if not (row["QYMC"] or "").strip():
        found.add("E_REQUIRED_MISSING")
    elif len(row["QYMC"].strip()) > FIELD_LIMIT:
        found.add("E_FIELD_TOO_LONG")
    if row["JLZT"] not in {"1", "2", "3"}:
        found.add("E_CODE_UNKNOWN")
    if has_mojibake(row["QYMC"]) or has_mojibake(row["ZS"]):
        found.add("E_ENCODING")
    if row["YYQXZ"] != "长期":
        until = parse_legacy_date(row["YYQXZ"])
        if until is None:
            found.add("E_DATE_INVALID")
        elif established is not None and until < established:
            found.add("E_VALIDITY_WINDOW")
    return found


def classify(rows: list[dict[str, Any]]) -> dict[int, set[str]]:
    """Row ID → reasons, repeats included: rows in cursor order, natural key ZCH + DJJGDM."""
    found = {r["ID"]: defects_of(r) for r in rows}
    in_order = sorted((r for r in rows if not found[r["ID"]]), key=lambda r: (r["GXSJ"], r["ID"]))
    content = [
        (
            r["ID"],
            (r["ZCH"], r["DJJGDM"]),
            tuple(v for k, v in r.items() if k not in {"ID", "GXSJ"}),
        )
        for r in in_order
    ]
    for row_id, reason in repeat_defects(content).items():
        found[row_id].add(reason)
    return found


def read_rows(url: str) -> list[dict[str, Any]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            result = conn.execute(select(licenses_table).order_by(licenses_table.c.ID))
            return [dict(r._mapping) for r in result]
    finally:
        engine.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'scjg.db'}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    try:
        import psycopg

        admin = psycopg.connect(
            "host=127.0.0.1 port=5432 user=postgres dbname=postgres",
            autocommit=True,
            connect_timeout=3,
        )
    except Exception as exc:  # any connection failure means: no server here
        require_or_skip(f"PostgreSQL at 127.0.0.1:5432 unreachable: {type(exc).__name__}")
    name = f"ehub_sim_{secrets.token_hex(4)}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def test_generation_is_deterministic_per_seed(sqlite_url: str, tmp_path: Path) -> None:
    first = generate(sqlite_url, count=300, defect_rate=0.1, seed=7)
    rows_first = read_rows(sqlite_url)
    other_url = f"sqlite:///{tmp_path / 'again.db'}"
    second = generate(other_url, count=300, defect_rate=0.1, seed=7)
    assert rows_first == read_rows(other_url)
    assert first == second
    assert rows_first == list(iter_rows(300, defect_rate=0.1, seed=7))
    different = list(iter_rows(300, defect_rate=0.1, seed=8))
    assert sum(a != b for a, b in zip(rows_first, different, strict=True)) > 250


def test_report_matches_rows_and_each_defect_is_alone(sqlite_url: str) -> None:
    report = generate(sqlite_url, count=2000, defect_rate=0.05, seed=3)
    rows = read_rows(sqlite_url)
    assert report.count == len(rows) == 2000
    assert [r["ID"] for r in rows] == list(range(1, 2001))
    assert set(report.defects) == set(DEFECT_KINDS)
    assert sum(report.defects.values()) == len(report.defective_ids) == 100
    assert Counter(report.defective_ids.values()) == Counter(report.defects)
    assert all(n == 10 for n in report.defects.values())  # 10 kinds since the repeats came
    assert report.expected == dict(report.defects)
    assert {k: len(v) for k, v in report.defective_keys.items()} == report.expected
    assert {i: k for k, ids in report.defective_keys.items() for i in ids} == report.defective_ids
    assert report.reason_of() == report.defective_ids and report.defective == 100
    json.dumps(report.to_dict(include_ids=True))
    found = classify(rows)
    for row in rows:
        expected = report.defective_ids.get(row["ID"])
        assert found[row["ID"]] == ({expected} if expected else set()), (row["ID"], expected)


def test_clean_rows_are_coherent(sqlite_url: str) -> None:
    generate(sqlite_url, count=500, defect_rate=0.0, seed=11)
    rows = read_rows(sqlite_url)
    uscc = [r["TYSHXYDM"] for r in rows]
    assert len(set(uscc)) == len(uscc)
    formats = Counter("-" in r["CLRQ"] for r in rows)
    assert formats[True] and formats[False], "legacy data mixes YYYY-MM-DD and YYYYMMDD"
    assert any(r["YYQXZ"] == "长期" for r in rows)
    assert set(Counter(r["JLZT"] for r in rows)) <= {"1", "2", "3"}
    for r in rows:
        assert not defects_of(r)
        assert uscc_is_valid(r["DJJGDM"]) and r["DJJGDM"].startswith("11")
        assert r["DJJGDM"][2:8] == r["DJJGQHDM"] and r["DJJGQHDM"] in KNOWN
        assert r["TYSHXYDM"][2:8] == r["XZQHDM"]
        assert r["DJJG"].endswith("市场监督管理局")
        assert len(r["ZCH"]) == 15 and r["ZCH"].isdigit()
        assert parse_legacy_date(r["FZRQ"]) >= parse_legacy_date(r["CLRQ"])  # type: ignore[operator]
        assert r["ZS"].startswith("山东省")
    gxsj = [r["GXSJ"] for r in rows]
    assert gxsj == sorted(gxsj) and len(set(gxsj)) == len(gxsj)


def test_repeats_copy_an_earlier_clean_row(sqlite_url: str) -> None:
    report = generate(sqlite_url, count=3000, defect_rate=0.2, seed=21)
    rows = {r["ID"]: r for r in read_rows(sqlite_url)}
    originals = plan(3000, 0.2, 21).originals
    repeats = report.defective_keys["E_DUPLICATE"] + report.defective_keys["E_VERSION_CONFLICT"]
    assert sorted(originals) == sorted(repeats) and len(repeats) == 120
    assert len(set(originals.values())) == len(originals), "each original is repeated once"
    for repeat, original in originals.items():
        a, b = rows[original], rows[repeat]
        assert original < repeat and a["GXSJ"] < b["GXSJ"]
        assert original not in report.defective_ids
        differs = {k for k in a if a[k] != b[k]} - {"ID", "GXSJ"}
        if report.defective_ids[repeat] == "E_DUPLICATE":
            assert differs == set()
        else:
            assert differs == {"ZS"} and b["ZS"].startswith("山东省")
    for row_id in report.defective_keys["E_FIELD_TOO_LONG"]:
        assert FIELD_LIMIT < len(rows[row_id]["QYMC"]) <= 2 * FIELD_LIMIT


def test_hundred_thousand_rows_stream_in_flat_memory(tmp_path: Path) -> None:
    def run(count: int) -> float:
        url = f"sqlite:///{tmp_path / f'big{count}.db'}"
        return peak_rss_mib(
            "from simulators.market_regulation import generate\n"
            f"r = generate({url!r}, count={count}, defect_rate=0.05, seed=2)\n"
            f"assert r.count == {count} and sum(r.expected.values()) == {count // 20}"
        )

    small, big = run(10_000), run(100_000)
    # 90k more rows of ~600 bytes would add ~50 MiB if held; streamed batches add ~nothing.
    assert big < small + 20, f"10k rows: {small:.0f} MiB, 100k rows: {big:.0f} MiB"


def test_defect_rate_and_count_are_validated(sqlite_url: str) -> None:
    with pytest.raises(ValueError, match="defect_rate"):
        generate(sqlite_url, count=10, defect_rate=1.5)
    with pytest.raises(ValueError, match="count"):
        generate(sqlite_url, count=-1)


def test_mutate_moves_rows_past_the_cursor(sqlite_url: str) -> None:
    report = generate(sqlite_url, count=200, defect_rate=0.1, seed=5)
    before = {r["ID"]: r for r in read_rows(sqlite_url)}
    cursor = max(r["GXSJ"] for r in before.values())
    ids = [150, 3, 77, next(iter(report.defective_ids))]
    assert mutate(sqlite_url, ids=[*ids, 9999], seed=1) == len(set(ids))
    after = {r["ID"]: r for r in read_rows(sqlite_url)}
    newer = sorted((r for r in after.values() if r["GXSJ"] > cursor), key=lambda r: r["GXSJ"])
    assert [r["ID"] for r in newer] == sorted(set(ids))
    for row_id in ids:
        assert after[row_id]["ZS"] != before[row_id]["ZS"]
        assert defects_of(after[row_id]) == defects_of(before[row_id])
    untouched = set(before) - set(ids)
    assert all(after[i] == before[i] for i in untouched)


def test_truncate_and_drop(sqlite_url: str) -> None:
    generate(sqlite_url, count=20, seed=1)
    truncate(sqlite_url)
    assert read_rows(sqlite_url) == []
    drop(sqlite_url)
    engine = create_engine(sqlite_url)
    assert not inspect(engine).has_table("T_SCJG_YYZZ")
    engine.dispose()
    drop(sqlite_url)  # dropping again is harmless


@pytest.mark.postgres
def test_postgresql_variant(pg_url: str, sqlite_url: str) -> None:
    report = generate(pg_url, count=1200, defect_rate=0.05, seed=9)
    rows = read_rows(pg_url)
    generate(sqlite_url, count=1200, defect_rate=0.05, seed=9)
    assert rows == read_rows(sqlite_url)
    assert sum(report.defects.values()) == 60
    found = classify(rows)
    for row in rows:
        expected = report.defective_ids.get(row["ID"])
        assert found[row["ID"]] == ({expected} if expected else set())
    engine = create_engine(pg_url)
    with engine.connect() as conn:  # legacy upper-case names are stored case-sensitively
        n = conn.execute(
            text('SELECT COUNT(*) FROM "T_SCJG_YYZZ" WHERE "GXSJ" > :c'), {"c": rows[99]["GXSJ"]}
        ).scalar_one()
    engine.dispose()
    assert n == 1100
    assert mutate(pg_url, ids=[1, 2], seed=0) == 2
    truncate(pg_url)
    assert read_rows(pg_url) == []
    drop(pg_url)
