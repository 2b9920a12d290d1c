"""Simulated unified acceptance system (一窗受理 / 统一受理系统): case records (办件) in SQL.

Creates two legacy tables in any SQLAlchemy URL: the case table ``T_YCSL_BJXX``
and the item catalogue ``T_SXML`` (事项目录) that the hub's mapping looks the
item name and implementing agency up in (case rows carry only SSBM). Rows are
deterministic for a seed; a chosen share carries exactly one injected defect
(:data:`DEFECT_KINDS`), reported with the row IDs the hub must quarantine.
Generation streams in batches of :data:`BATCH_SIZE` (memory flat whatever the count).

Column names are upper-case pinyin abbreviations (quote them in PostgreSQL).
Times are ``YYYY-MM-DD HH:MM:SS`` local time (Asia/Shanghai, no offset).

``T_YCSL_BJXX``:

| column | meaning |
|---|---|
| ID | integer primary key, 1..count (the hub's source key) |
| SBLSH | 申办流水号, the case number (natural key): SSBM (31) + SBSJ's ``yyyyMMdd`` + 4-digit serial |
| SSBM | 实施编码 (31): agency USCC (18) + category (1) + division (6) + item (3) + ``000`` |
| BJLX | 办件类型: ``JB`` 即办件 / ``CN`` 承诺件 |
| SQRLX | 申请人类型: ``1`` 个人 / ``2`` 法人 |
| SQRMC | 申请人名称 (required, at most 200 characters; the column holds 400) |
| SQRZJLX | 证件类型: ``SFZ`` 居民身份证 / ``TYXYDM`` 统一社会信用代码 |
| SQRZJHM | 证件号码: 18-char citizen ID (SFZ) or USCC (TYXYDM) |
| LXRSJ | contact mobile number (11 digits; personal data) |
| SBQD | 申报渠道: ``PC`` PC端, ``CK`` 大厅窗口, ``YD`` 移动端, ``ZZ`` 自助终端 |
| BJZT | 办件状态: ``10`` 已申报, ``20`` 已受理, ``21`` 不予受理, ``30`` 已审批, ``40`` 已办结, ``90`` 已撤回 |
| BJJG | 办结结果 (state 40 only): ``1`` 准予许可, ``2`` 不予许可, ``3`` 终止办理, ``4`` 转报办结 |
| SBSJ | 申报时间 (always set) |
| SLSJ | 受理时间 (states 20, 30, 40; sometimes 90) |
| SPSJ | 审批时间 (states 30, 40 except results 3) |
| BJSJ | 办结时间 (state 40; state 21: when it was refused) |
| XZQHDM | 6-digit division of the case (GB/T 2260) |
| CNBJSX / FDBJSX | promised / legal time limit in working days (integers; CNBJSX 0 for 即办件) |
| JGZZBH | resulting license number (granted cases of license-issuing items), else NULL |
| GXSJ | last update, the incremental cursor: strictly increasing with ID |

In clean rows SBSJ <= SLSJ <= SPSJ <= BJSJ <= GXSJ (those set). Canonical
translations of every department code: :data:`simulators.case_data.CANONICAL`.

``T_SXML``: SSBM (primary key) → SXMC 事项名称, SSJGMC 实施机构名称, SSJGDM
实施机构代码 (USCC), XZQHDM. Every county's 行政审批服务局 implements the
items of :data:`simulators.case_data.ITEMS`.

Defects (one per defective row; everything else stays clean):

| reason | where |
|---|---|
| E_CITIZEN_ID_CHECK | SQRZJHM of a person (SQRZJLX ``SFZ``) with a wrong check character |
| E_USCC_CHECK | SQRZJHM of a legal entity (``TYXYDM``) with a wrong check character |
| E_DATE_INVALID | SBSJ, SLSJ or BJSJ (one that is set) with an impossible date |
| E_CODE_UNKNOWN | SBQD (``QT``/``WX``/``DH``) or BJZT (``00``/``50``/``99``) not in the lists |
| E_REQUIRED_MISSING | SQRMC or SSBM NULL, empty or blank |
| E_FIELD_TOO_LONG | SQRMC of 201..400 characters |
| E_ENCODING | SQRMC mojibake (UTF-8 read as Latin-1, or GBK read as UTF-8) |
| E_DIVISION_UNKNOWN | XZQHDM a well-formed code absent from GB/T 2260 |
| E_DUPLICATE | a later row (higher ID and GXSJ) with the same SBLSH, identical content |
| E_VERSION_CONFLICT | same, but another (valid) SBQD channel |

Never imports the hub: it is a stand-in for an external system.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Column, Engine, Index, Integer, MetaData, String, Table, create_engine

from simulators import case_data as cv
from simulators import market_data as vocab
from simulators.checks import USCC_CHARSET, make_citizen_id, make_uscc
from simulators.defect_kit import GeneratorReport, make_report
from simulators.defect_plan import (
    RELATIONAL_KINDS,
    DefectPlan,
    base31,
    impossible_month_day,
    mojibake,
    oversize,
    plan_defects,
)

TABLE_NAME = "T_YCSL_BJXX"
ITEMS_TABLE_NAME = "T_SXML"
DEFECT_KINDS: tuple[str, ...] = (
    "E_CITIZEN_ID_CHECK",
    "E_USCC_CHECK",
    "E_DATE_INVALID",
    "E_CODE_UNKNOWN",
    "E_REQUIRED_MISSING",
    "E_FIELD_TOO_LONG",
    "E_ENCODING",
    "E_DIVISION_UNKNOWN",
    "E_DUPLICATE",
    "E_VERSION_CONFLICT",
)
BATCH_SIZE = 5000
ROWS_PER_DAY = 2000
"""Cases submitted per day: row IDs in submission order, the serial is the place in the day."""
TIME_FMT = "%Y-%m-%d %H:%M:%S"

_FIRST_DAY = date(2018, 1, 1)
_SUBMIT_STEP = 21  # seconds between submissions: 2000 a day from 08:00 to 19:40
_GXSJ_DELAY = timedelta(days=61)  # rows reach the exchange tables after every event
_GXSJ_STEP = 40
_GXSJ_ORIGIN = datetime.combine(_FIRST_DAY, time()) + _GXSJ_DELAY
_BIRTH_FIRST, _BIRTH_LAST = date(1950, 1, 1), date(2000, 12, 31)

metadata = MetaData()
cases_table = Table(
    TABLE_NAME,
    metadata,
    Column("ID", Integer, primary_key=True, autoincrement=False),
    Column("SBLSH", String(43)),
    Column("SSBM", String(31)),
    Column("BJLX", String(2)),
    Column("SQRLX", String(1)),
    Column("SQRMC", String(400)),
    Column("SQRZJLX", String(10)),
    Column("SQRZJHM", String(18)),
    Column("LXRSJ", String(11)),
    Column("SBQD", String(2)),
    Column("BJZT", String(2)),
    Column("BJJG", String(1)),
    Column("SBSJ", String(19)),
    Column("SLSJ", String(19)),
    Column("SPSJ", String(19)),
    Column("BJSJ", String(19)),
    Column("XZQHDM", String(6)),
    Column("CNBJSX", Integer),
    Column("FDBJSX", Integer),
    Column("JGZZBH", String(40)),
    Column("GXSJ", String(19), nullable=False),
    Index(f"IX_{TABLE_NAME}_GXSJ", "GXSJ"),
)
items_table = Table(
    ITEMS_TABLE_NAME,
    metadata,
    Column("SSBM", String(31), primary_key=True),
    Column("SXMC", String(100), nullable=False),
    Column("SSJGMC", String(100), nullable=False),
    Column("SSJGDM", String(18), nullable=False),
    Column("XZQHDM", String(6), nullable=False),
)


@functools.cache
def agency(division: str) -> tuple[str, str]:
    """Name and USCC (class ``11``) of the 行政审批服务局 of a county."""
    county = next(c for c in vocab.COUNTIES if c.code == division)
    prefix = county.name if county.name.endswith("市") else county.city_name + county.name
    return f"{prefix}行政审批服务局", make_uscc("11", division, "MC" + base31(int(division) * 7919))


def item_code(division: str, item: cv.ItemTemplate) -> str:
    """The 31-char 实施编码 of ``item`` as implemented in ``division``."""
    return f"{agency(division)[1]}{item.category}{division}{item.seq}000"


def item_rows() -> Iterator[dict[str, str]]:
    """The rows of ``T_SXML``: every county implements every item template."""
    for county in vocab.COUNTIES:
        name, code = agency(county.code)
        for item in cv.ITEMS:
            yield {
                "SSBM": item_code(county.code, item),
                "SXMC": item.name,
                "SSJGMC": name,
                "SSJGDM": code,
                "XZQHDM": county.code,
            }


def _fmt(t: datetime | None) -> str | None:
    # isoformat is several times faster than strftime; no microseconds are ever set.
    return None if t is None else t.isoformat(" ")


def _pick(rng: random.Random, weighted: tuple[tuple[str, int], ...]) -> str:
    return rng.choices([c for c, _ in weighted], weights=[w for _, w in weighted])[0]


def _person(rng: random.Random) -> tuple[str, str]:
    given = "".join(rng.choice(vocab.GIVEN_CHARS) for _ in range(rng.choice((1, 2, 2))))
    birth = _BIRTH_FIRST + timedelta(days=rng.randrange((_BIRTH_LAST - _BIRTH_FIRST).days + 1))
    code = make_citizen_id(rng.choice(vocab.COUNTIES).code, birth, rng.randrange(1000))
    return rng.choice(vocab.SURNAMES) + given, code


def _entity(rng: random.Random, county: vocab.County) -> tuple[str, str]:
    industry, _ = rng.choice(vocab.INDUSTRIES)
    name = f"{county.city_name[:-1]}{rng.choice(vocab.TRADE_NAMES)}{industry}有限公司"
    body = "MA" + "".join(rng.choice(USCC_CHARSET) for _ in range(6))
    return name, make_uscc("91", county.code, body)


def _timeline(
    rng: random.Random, item: cv.ItemTemplate, state: str, result: str | None, submitted: datetime
) -> tuple[datetime | None, datetime | None, datetime | None]:
    """(accepted, decided, completed) for a state; each later than the one before."""
    quick = item.case_type == "JB"

    def later(t: datetime, lo: int, hi: int) -> datetime:
        return t + timedelta(seconds=rng.randint(lo, hi))

    accepted = later(submitted, 60, 1800) if quick else later(submitted, 600, 2 * 86400)
    days = max(item.promised_days, 1)
    decided = later(accepted, 60, 1800) if quick else later(accepted, 3600, days * 86400)
    completed = later(decided, 60, 1200) if quick else later(decided, 600, 2 * 86400)
    if state == "10":
        return None, None, None
    if state == "20":
        return accepted, None, None
    if state == "21":
        return None, None, later(submitted, 3600, 3 * 86400)
    if state == "30":
        return accepted, decided, None
    if state == "40":
        return accepted, (None if result == "3" else decided), completed
    return (accepted if rng.random() < 0.5 else None), None, None  # 90 withdrawn


def _row(seed: int, row_id: int, defect: str | None) -> dict[str, Any]:
    rng = random.Random((seed << 32) ^ (row_id * 2_246_822_519) ^ 0x0CA5E)
    day_index, within = divmod(row_id - 1, ROWS_PER_DAY)
    day = _FIRST_DAY + timedelta(days=day_index)
    county = rng.choice(vocab.COUNTIES)
    pool = {"E_CITIZEN_ID_CHECK": cv.PERSON_ITEMS, "E_USCC_CHECK": cv.ENTITY_ITEMS}
    item = rng.choice(pool.get(defect or "", cv.ITEMS))
    ssbm = item_code(county.code, item)
    submitted = datetime.combine(day, time(8)) + timedelta(
        seconds=within * _SUBMIT_STEP + rng.randrange(_SUBMIT_STEP)
    )
    state = _pick(rng, cv.STATE_WEIGHTS)
    result = _pick(rng, cv.RESULT_WEIGHTS) if state == "40" else None
    accepted, decided, completed = _timeline(rng, item, state, result, submitted)
    if item.applicant == "P":
        applicant, code = _person(rng)
    else:
        applicant, code = _entity(rng, county)
    license_no = None
    if result == "1" and item.license_prefix:
        license_no = f"{item.license_prefix}{county.code}{day:%Y}{row_id:08d}"
    row: dict[str, Any] = {
        "ID": row_id,
        "SBLSH": f"{ssbm}{day:%Y%m%d}{within + 1:04d}",
        "SSBM": ssbm,
        "BJLX": item.case_type,
        "SQRLX": "1" if item.applicant == "P" else "2",
        "SQRMC": applicant,
        "SQRZJLX": "SFZ" if item.applicant == "P" else "TYXYDM",
        "SQRZJHM": code,
        "LXRSJ": rng.choice(cv.PHONE_PREFIXES) + f"{rng.randrange(10**8):08d}",
        "SBQD": _pick(rng, cv.CHANNEL_WEIGHTS),
        "BJZT": state,
        "BJJG": result,
        "SBSJ": _fmt(submitted),
        "SLSJ": _fmt(accepted),
        "SPSJ": _fmt(decided),
        "BJSJ": _fmt(completed),
        "XZQHDM": county.code,
        "CNBJSX": item.promised_days,
        "FDBJSX": item.legal_days,
        "JGZZBH": license_no,
        "GXSJ": _gxsj(row_id),
    }
    if defect is not None:
        _inject(row, defect, rng)
    return row


def _gxsj(row_id: int) -> str:
    day_index, within = divmod(row_id - 1, ROWS_PER_DAY)
    return (_GXSJ_ORIGIN + timedelta(days=day_index, seconds=within * _GXSJ_STEP)).isoformat(" ")


def _inject(row: dict[str, Any], defect: str, rng: random.Random) -> None:
    """Apply exactly one defect; every other field stays valid."""
    if defect == "E_CITIZEN_ID_CHECK":
        good = row["SQRZJHM"][17]
        row["SQRZJHM"] = row["SQRZJHM"][:17] + rng.choice("0123456789X".replace(good, ""))
    elif defect == "E_USCC_CHECK":
        good = row["SQRZJHM"][17]
        row["SQRZJHM"] = row["SQRZJHM"][:17] + rng.choice(USCC_CHARSET.replace(good, ""))
    elif defect == "E_DATE_INVALID":
        column = rng.choice([c for c in ("SBSJ", "SLSJ", "BJSJ") if row[c]])
        month, day = impossible_month_day(rng)
        row[column] = f"{row[column][:4]}-{month:02d}-{day:02d}{row[column][10:]}"
    elif defect == "E_CODE_UNKNOWN":
        if rng.random() < 0.5:
            row["SBQD"] = rng.choice(cv.UNKNOWN_CHANNELS)
        else:
            row["BJZT"] = rng.choice(cv.UNKNOWN_STATES)
    elif defect == "E_REQUIRED_MISSING":
        row[rng.choice(("SQRMC", "SSBM"))] = rng.choice((None, "", "  "))
    elif defect == "E_FIELD_TOO_LONG":
        row["SQRMC"] = oversize(row["SQRMC"], rng, cv.OVERSIZE_FILLERS)
    elif defect == "E_ENCODING":
        row["SQRMC"] = mojibake(row["SQRMC"], rng)
    elif defect == "E_DIVISION_UNKNOWN":
        row["XZQHDM"] = rng.choice(vocab.UNKNOWN_DIVISIONS)
    else:
        raise ValueError(f"unknown defect kind {defect!r}; expected one of {DEFECT_KINDS}")


def _planned_row(seed: int, row_id: int, the_plan: DefectPlan) -> dict[str, Any]:
    defect = the_plan.kinds.get(row_id)
    if defect not in RELATIONAL_KINDS:
        return _row(seed, row_id, defect)
    row = _row(seed, the_plan.originals[row_id], None)
    row.update(ID=row_id, GXSJ=_gxsj(row_id))
    if defect == "E_VERSION_CONFLICT":
        rng = random.Random((seed << 32) ^ (row_id * 40_503))
        row["SBQD"] = rng.choice([c for c in cv.CHANNELS if c != row["SBQD"]])
    return row


def plan(count: int, defect_rate: float, seed: int) -> DefectPlan:
    """Row ID → defect kind, and each repeat's original row ID."""
    return plan_defects(count, defect_rate, seed, DEFECT_KINDS)


def iter_rows(count: int, *, defect_rate: float = 0.05, seed: int = 0) -> Iterator[dict[str, Any]]:
    """The case rows :func:`generate` writes, in ID order, without a database."""
    the_plan = plan(count, defect_rate, seed)
    for row_id in range(1, count + 1):
        yield _planned_row(seed, row_id, the_plan)


def _engine(url: str) -> Engine:
    return create_engine(url, future=True)


def generate(url: str, *, count: int, defect_rate: float = 0.05, seed: int = 0) -> GeneratorReport:
    """(Re)create both tables at ``url``; fill T_SXML and ``count`` case rows.

    Deterministic for ``(count, defect_rate, seed)``; existing tables of those
    names are dropped first. The report's keys are row IDs.
    """
    the_plan = plan(count, defect_rate, seed)
    engine = _engine(url)
    try:
        metadata.drop_all(engine)
        metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(items_table.insert(), list(item_rows()))
        batch: list[dict[str, Any]] = []
        for row_id in range(1, count + 1):
            batch.append(_planned_row(seed, row_id, the_plan))
            if len(batch) >= BATCH_SIZE or row_id == count:
                with engine.begin() as conn:
                    conn.execute(cases_table.insert(), batch)
                batch = []
    finally:
        engine.dispose()
    return make_report(count, DEFECT_KINDS, ((k, i) for i, k in the_plan.kinds.items()))


def truncate(url: str) -> None:
    """Delete every case row (the item catalogue stays)."""
    engine = _engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(cases_table.delete())
    finally:
        engine.dispose()


def drop(url: str) -> None:
    """Drop both tables if they exist."""
    engine = _engine(url)
    try:
        metadata.drop_all(engine)
    finally:
        engine.dispose()


__all__ = [
    "DEFECT_KINDS",
    "ITEMS_TABLE_NAME",
    "TABLE_NAME",
    "agency",
    "cases_table",
    "drop",
    "generate",
    "item_code",
    "item_rows",
    "items_table",
    "iter_rows",
    "plan",
    "truncate",
]
