"""Simulated market-regulation (市场监管) department database of business licenses.

Creates the legacy table ``T_SCJG_YYZZ`` (营业执照) in any SQLAlchemy URL and fills
it with deterministic, realistic rows, a known share of which carry exactly one
injected defect. The hub must quarantine each defective row with the reason
code named in :data:`DEFECT_KINDS`; :class:`GeneratorReport` says which rows.
Generation streams: rows are built one by one from ``(seed, ID)`` and inserted
in batches of :data:`BATCH_SIZE`, so memory stays flat from a hundred rows to
millions; only the defect plan (one entry per defective row) is held.

Column names are upper-case legacy pinyin abbreviations, so PostgreSQL stores
them case-sensitively (quote them in SQL: ``SELECT "ID", "GXSJ" FROM "T_SCJG_YYZZ"``).

| column | meaning |
|---|---|
| ID | integer primary key, 1..count (the hub's source key) |
| TYSHXYDM | enterprise USCC (holder code, GB 32100) |
| QYMC | enterprise name (required; up to 200 characters, the column holds 400) |
| ZCH | legacy 15-digit registration number (printed license number, ZZBH) |
| FDDBR | legal representative |
| QYLX | enterprise type |
| ZCZB | registered capital, free text (e.g. ``100万元人民币``) |
| ZS | address |
| JYFW | business scope |
| CLRQ | established date, ``YYYY-MM-DD`` or ``YYYYMMDD`` (mixed, legacy) |
| YYQXZ | operating period end, date in either format or ``长期`` |
| DJJG / DJJGDM / DJJGQHDM | registration authority name / USCC / division |
| XZQHDM | enterprise division (6-digit GB/T 2260) |
| FZRQ | license issue date, either format |
| JLZT | record status: ``1`` 存续, ``2`` 吊销, ``3`` 注销 |
| GXSJ | last update ``YYYY-MM-DD HH:MM:SS``; the incremental cursor, strictly increasing with ID |

Defects (one per defective row; every other field stays clean):

| reason | where |
|---|---|
| E_USCC_CHECK | TYSHXYDM with a wrong check character |
| E_DATE_INVALID | CLRQ or FZRQ an impossible date (02-30, month 13, day 00, …) |
| E_DIVISION_UNKNOWN | XZQHDM a well-formed code absent from GB/T 2260 (``3799xx``) |
| E_REQUIRED_MISSING | QYMC empty or NULL |
| E_VALIDITY_WINDOW | YYQXZ before CLRQ |
| E_CODE_UNKNOWN | JLZT outside ``1``/``2``/``3`` (``0``, ``4``, ``9``, ``X``) |
| E_FIELD_TOO_LONG | QYMC of 201..400 characters |
| E_ENCODING | QYMC or ZS mojibake (UTF-8 read as Latin-1, or GBK read as UTF-8) |
| E_DUPLICATE | a copy of an earlier clean row under another ID (later GXSJ): same ZCH + DJJGDM, all else equal |
| E_VERSION_CONFLICT | like a duplicate but with another ZS address (the mapping must carry ZS) |

This module never imports the hub: it is a stand-in for an external system.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from types import MappingProxyType
from typing import Any

from sqlalchemy import (
    Column,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    func,
    select,
    update,
)

from simulators import market_data as vocab
from simulators.checks import USCC_CHARSET, make_uscc, registration_number
from simulators.defect_plan import RELATIONAL_KINDS, DefectPlan, mojibake, oversize
from simulators.defect_plan import plan_defects as plan_repeats

TABLE_NAME = "T_SCJG_YYZZ"
DEFECT_KINDS: tuple[str, ...] = (
    "E_USCC_CHECK",
    "E_DATE_INVALID",
    "E_DIVISION_UNKNOWN",
    "E_REQUIRED_MISSING",
    "E_VALIDITY_WINDOW",
    "E_CODE_UNKNOWN",
    "E_FIELD_TOO_LONG",
    "E_ENCODING",
    "E_DUPLICATE",
    "E_VERSION_CONFLICT",
)
STATUS_NAMES = {"1": "存续", "2": "吊销", "3": "注销"}
LONG_TERM = "长期"
BATCH_SIZE = 5000

_EARLIEST = date(1995, 1, 1)
_LATEST = date(2023, 12, 31)
_USCC_ERA = date(2015, 10, 1)
_GXSJ_BASE = datetime(2024, 1, 1, 8, 0, 0)
_GXSJ_FMT = "%Y-%m-%d %H:%M:%S"
_IMPOSSIBLE_MONTH_DAYS = ((2, 30), (2, 31), (4, 31), (6, 31), (9, 31), (11, 31), (13, 5), (0, 10))
_UNKNOWN_STATUSES = ("0", "4", "9", "X")

metadata = MetaData()
licenses_table = Table(
    TABLE_NAME,
    metadata,
    Column("ID", Integer, primary_key=True, autoincrement=False),
    Column("TYSHXYDM", String(18)),
    Column("QYMC", String(400)),
    Column("ZCH", String(15)),
    Column("FDDBR", String(50)),
    Column("QYLX", String(100)),
    Column("ZCZB", String(50)),
    Column("ZS", String(300)),
    Column("JYFW", String(2000)),
    Column("CLRQ", String(10)),
    Column("YYQXZ", String(10)),
    Column("DJJG", String(100)),
    Column("DJJGDM", String(18)),
    Column("DJJGQHDM", String(6)),
    Column("XZQHDM", String(6)),
    Column("FZRQ", String(10)),
    Column("JLZT", String(1)),
    Column("GXSJ", String(19), nullable=False),
    Index(f"IX_{TABLE_NAME}_GXSJ", "GXSJ"),
)


@dataclass(frozen=True)
class GeneratorReport:
    """What :func:`generate` wrote: row count and the injected defects."""

    count: int
    """Rows written (IDs 1..count)."""
    defects: Mapping[str, int] = field(default_factory=dict)
    """Reason code → number of rows carrying that defect (every kind listed, zeros too)."""
    defective_ids: Mapping[int, str] = field(default_factory=dict)
    """Row ID → the one reason code that row must be quarantined with."""
    expected: dict[str, int] = field(default_factory=dict)
    """Reason code → exact number of rows the hub must quarantine with it (same as ``defects``)."""
    defective_keys: dict[str, tuple[int, ...]] = field(default_factory=dict)
    """Reason code → the row IDs (the hub's source keys) carrying it, ascending."""

    @property
    def defective(self) -> int:
        return len(self.defective_ids)

    def reason_of(self) -> dict[int, str]:
        """Row ID → its one reason code (as the other generators' reports offer)."""
        return dict(self.defective_ids)

    def to_dict(self, *, include_ids: bool = False, include_keys: bool = False) -> dict[str, Any]:
        """JSON-ready form; the per-row maps only on request (they can be large)."""
        out: dict[str, Any] = {
            "count": self.count,
            "defects": dict(self.defects),
            "expected": dict(self.expected),
            "defective": len(self.defective_ids),
        }
        if include_ids:
            out["defective_ids"] = {str(k): v for k, v in sorted(self.defective_ids.items())}
        if include_ids or include_keys:
            out["defective_keys"] = {k: list(v) for k, v in self.defective_keys.items()}
        return out


def _engine(url: str) -> Engine:
    return create_engine(url, future=True)


def _fmt_date(d: date, rng: random.Random) -> str:
    return d.strftime("%Y-%m-%d") if rng.random() < 0.7 else d.strftime("%Y%m%d")


def _impossible_date(year: int, rng: random.Random) -> str:
    month, day = rng.choice(_IMPOSSIBLE_MONTH_DAYS)
    if rng.random() < 0.7:
        return f"{year:04d}-{month:02d}-{day:02d}"
    return f"{year:04d}{month:02d}{day:02d}"


def _add_years(d: date, years: int) -> date:
    try:
        return d.replace(year=d.year + years)
    except ValueError:  # 29 February
        return d.replace(year=d.year + years, day=28)


def _person_name(rng: random.Random) -> str:
    given = "".join(rng.choice(vocab.GIVEN_CHARS) for _ in range(rng.choice((1, 2, 2))))
    return rng.choice(vocab.SURNAMES) + given


def _bijection(row_id: int, seed: int, modulus: int) -> int:
    # 7919 is prime and coprime to 10**8 and 31**6: distinct IDs give distinct values.
    return (row_id * 7919 + seed * 104_729 + 31_415_926) % modulus


def _org_body(row_id: int, seed: int, established: date) -> str:
    if established < _USCC_ERA:
        return f"{_bijection(row_id, seed, 10**8):08d}"
    n = _bijection(row_id, seed, 31**6)
    chars = []
    for _ in range(6):
        n, r = divmod(n, 31)
        chars.append(USCC_CHARSET[r])
    return "MA" + "".join(reversed(chars))


@functools.cache
def _authority(division: str) -> tuple[str, str]:
    """Name and USCC (class ``11``: 机关) of the market regulation bureau of a division."""
    if division.endswith("00"):
        name = f"{vocab.CITY_NAMES[division]}市场监督管理局"
    else:
        county = next(c for c in vocab.COUNTIES if c.code == division)
        prefix = county.name if county.name.endswith("市") else county.city_name + county.name
        name = f"{prefix}市场监督管理局"
    n = int(division) * 7919 % 31**6
    body = "MB"
    for _ in range(6):
        n, r = divmod(n, 31)
        body += USCC_CHARSET[r]
    return name, make_uscc("11", division, body)


def _gxsj(row_id: int) -> str:
    return (_GXSJ_BASE + timedelta(seconds=3 * row_id)).strftime(_GXSJ_FMT)


def _address(county: vocab.County, rng: random.Random) -> str:
    return (
        f"山东省{county.city_name}{county.name}{rng.choice(vocab.STREETS)}{rng.randint(1, 999)}号"
    )


def _planned_row(seed: int, row_id: int, plan: DefectPlan) -> dict[str, Any]:
    """Row ``row_id`` under ``plan``: repeats copy their (regenerated) clean original."""
    defect = plan.kinds.get(row_id)
    if defect not in RELATIONAL_KINDS:
        return _row(seed, row_id, defect)
    row = _row(seed, plan.originals[row_id], None)
    row.update(ID=row_id, GXSJ=_gxsj(row_id))
    if defect == "E_VERSION_CONFLICT":
        rng = random.Random((seed << 32) ^ (row_id * 40_503))
        county = next(c for c in vocab.COUNTIES if c.code == row["XZQHDM"])
        original = row["ZS"]
        while row["ZS"] == original:
            row["ZS"] = _address(county, rng)
    return row


def _row(seed: int, row_id: int, defect: str | None) -> dict[str, Any]:
    rng = random.Random((seed << 32) | row_id)
    county = rng.choice(vocab.COUNTIES)
    qylx, suffix = rng.choices(
        [(t, s) for t, s, _ in vocab.ENTERPRISE_TYPES],
        weights=[w for _, _, w in vocab.ENTERPRISE_TYPES],
    )[0]
    industry, scopes = rng.choice(vocab.INDUSTRIES)
    trade = rng.choice(vocab.TRADE_NAMES)
    if suffix == "商行":
        name = f"{county.city_name}{county.name}{trade}{industry}{suffix}"
    else:
        name = f"{county.city_name[:-1]}{trade}{industry}{suffix}"

    span = (_LATEST - _EARLIEST).days
    established = _EARLIEST + timedelta(days=rng.randrange(span + 1))
    issued = established
    if rng.random() < 0.4:
        issued = established + timedelta(days=rng.randrange((_LATEST - established).days + 1))
    until: date | None = (
        None
        if rng.random() < 0.6
        else _add_years(established, rng.choice((10, 20, 30))) - timedelta(days=1)
    )

    authority_div = county.city_code if rng.random() < 0.15 else county.code
    authority_name, authority_code = _authority(authority_div)
    uscc = make_uscc("91", county.code, _org_body(row_id, seed, established))
    chosen_scopes = rng.sample(scopes, k=min(len(scopes), rng.randint(1, 3)))
    capital = rng.choice((10, 30, 50, 100, 200, 300, 500, 1000, 2000, 5000))
    row: dict[str, Any] = {
        "ID": row_id,
        "TYSHXYDM": uscc,
        "QYMC": name,
        "ZCH": registration_number(authority_div, _bijection(row_id, seed, 10**8)),
        "FDDBR": _person_name(rng),
        "QYLX": qylx,
        "ZCZB": f"{capital}{rng.choice(('万元人民币', '万人民币', '万元'))}",
        "ZS": _address(county, rng),
        "JYFW": "；".join(chosen_scopes) + "。" + vocab.SCOPE_TAIL,
        "CLRQ": _fmt_date(established, rng),
        "YYQXZ": LONG_TERM if until is None else _fmt_date(until, rng),
        "DJJG": authority_name,
        "DJJGDM": authority_code,
        "DJJGQHDM": authority_div,
        "XZQHDM": county.code,
        "FZRQ": _fmt_date(issued, rng),
        "JLZT": rng.choices(("1", "2", "3"), weights=(88, 4, 8))[0],
        "GXSJ": _gxsj(row_id),
    }
    if defect is not None:
        _inject(row, defect, established, rng)
    return row


def _inject(row: dict[str, Any], defect: str, established: date, rng: random.Random) -> None:
    """Apply exactly one defect; every other field stays valid."""
    if defect == "E_USCC_CHECK":
        good = row["TYSHXYDM"][17]
        row["TYSHXYDM"] = row["TYSHXYDM"][:17] + rng.choice(USCC_CHARSET.replace(good, ""))
    elif defect == "E_DATE_INVALID":
        column = rng.choice(("CLRQ", "FZRQ"))
        row[column] = _impossible_date(established.year, rng)
    elif defect == "E_DIVISION_UNKNOWN":
        row["XZQHDM"] = rng.choice(vocab.UNKNOWN_DIVISIONS)
    elif defect == "E_REQUIRED_MISSING":
        row["QYMC"] = rng.choice(("", None))
    elif defect == "E_VALIDITY_WINDOW":
        row["YYQXZ"] = _fmt_date(established - timedelta(days=rng.randint(1, 3650)), rng)
    elif defect == "E_CODE_UNKNOWN":
        row["JLZT"] = rng.choice(_UNKNOWN_STATUSES)
    elif defect == "E_FIELD_TOO_LONG":
        branches = [f"{row['ZS'][3:9]}{t}分店" for t in vocab.TRADE_NAMES]
        row["QYMC"] = oversize(row["QYMC"], rng, branches)
    elif defect == "E_ENCODING":
        column = rng.choice(("QYMC", "ZS"))
        row[column] = mojibake(row[column], rng)
    else:
        raise ValueError(f"unknown defect kind {defect!r}; expected one of {DEFECT_KINDS}")


def plan(count: int, defect_rate: float, seed: int) -> DefectPlan:
    """The defect plan: row ID → kind, and each repeat's original row ID."""
    return plan_repeats(count, defect_rate, seed, DEFECT_KINDS)


def plan_defects(count: int, defect_rate: float, seed: int) -> dict[int, str]:
    """Row ID → defect kind; round(count × rate) rows, kinds balanced round-robin."""
    return dict(plan(count, defect_rate, seed).kinds)


def iter_rows(count: int, *, defect_rate: float = 0.05, seed: int = 0) -> Iterator[dict[str, Any]]:
    """The rows :func:`generate` writes, without a database."""
    the_plan = plan(count, defect_rate, seed)
    for row_id in range(1, count + 1):
        yield _planned_row(seed, row_id, the_plan)


def _batches(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def generate(url: str, *, count: int, defect_rate: float = 0.05, seed: int = 0) -> GeneratorReport:
    """(Re)create ``T_SCJG_YYZZ`` at ``url`` and fill it with ``count`` rows.

    Deterministic for a seed. An existing table of that name is dropped first.
    """
    the_plan = plan(count, defect_rate, seed)
    engine = _engine(url)
    try:
        metadata.drop_all(engine, tables=[licenses_table])
        metadata.create_all(engine, tables=[licenses_table])
        rows = (_planned_row(seed, row_id, the_plan) for row_id in range(1, count + 1))
        for batch in _batches(rows, BATCH_SIZE):
            with engine.begin() as conn:
                conn.execute(licenses_table.insert(), batch)
    finally:
        engine.dispose()
    counts = the_plan.counts(DEFECT_KINDS)
    keys: dict[str, list[int]] = {kind: [] for kind in DEFECT_KINDS}
    for row_id, kind in the_plan.kinds.items():
        keys[kind].append(row_id)
    return GeneratorReport(
        count=count,
        defects=MappingProxyType(counts),
        defective_ids=MappingProxyType(dict(the_plan.kinds)),
        expected=dict(counts),
        defective_keys={kind: tuple(ids) for kind, ids in keys.items()},
    )


def mutate(url: str, *, ids: Iterable[int], seed: int) -> int:
    """Give the rows ``ids`` a new version: new address, sometimes a status change.

    This is the department correcting records in place (``update_rows``).

    Their GXSJ moves past the current maximum (in ID order), so an incremental
    reader sees exactly these rows again: a department correcting records.
    Single-row defects are left as they are. Repeats are not: a mutated
    duplicate differs from its original (a conflict), and a mutated original is
    newer than its repeats; mutate rows outside ``plan(...).originals`` and
    its keys when the expected counts must hold. Returns the number of rows updated.
    """
    wanted = sorted(set(ids))
    engine = _engine(url)
    t = licenses_table
    try:
        with engine.begin() as conn:
            latest = conn.execute(select(func.max(t.c.GXSJ))).scalar_one_or_none()
            clock = datetime.strptime(latest, _GXSJ_FMT) if latest else _GXSJ_BASE
            updated = 0
            for row_id in wanted:
                current = conn.execute(
                    select(t.c.XZQHDM, t.c.JLZT, t.c.ZS).filter_by(ID=row_id)
                ).first()
                if current is None:
                    continue
                rng = random.Random((seed << 32) ^ (row_id * 2_654_435_761))
                clock += timedelta(seconds=1)
                prefix = next(
                    (
                        f"山东省{c.city_name}{c.name}"
                        for c in vocab.COUNTIES
                        if (current.ZS or "").startswith(f"山东省{c.city_name}{c.name}")
                    ),
                    None,
                )
                # A garbled (E_ENCODING) address keeps its defect: only clean ones move.
                address = current.ZS
                if prefix is not None:
                    street = f"{rng.choice(vocab.STREETS)}{rng.randint(1, 999)}号"
                    address = f"{prefix}{street}{rng.randint(1, 30)}号楼"
                status = "3" if current.JLZT == "1" and rng.random() < 0.2 else current.JLZT
                conn.execute(
                    update(t)
                    .filter_by(ID=row_id)
                    .values(ZS=address, JLZT=status, GXSJ=clock.strftime(_GXSJ_FMT))
                )
                updated += 1
    finally:
        engine.dispose()
    return updated


def truncate(url: str) -> None:
    """Delete every row (the table stays)."""
    engine = _engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(licenses_table.delete())
    finally:
        engine.dispose()


def drop(url: str) -> None:
    """Drop the table if it exists."""
    engine = _engine(url)
    try:
        metadata.drop_all(engine, tables=[licenses_table])
    finally:
        engine.dispose()


__all__ = [
    "DEFECT_KINDS",
    "TABLE_NAME",
    "GeneratorReport",
    "drop",
    "generate",
    "iter_rows",
    "licenses_table",
    "mutate",
    "plan",
    "plan_defects",
    "truncate",
]
