"""Records of the simulated housing department (住房和城乡建设厅): construction permits.

Builds the camelCase permit items (建筑工程施工许可证) and issuing-authority
records that :mod:`simulators.housing` serves, with a planned share of items
carrying exactly one defect each. Pure and deterministic: an item is a
function of (seed, id, defect plan) only, so the millionth item costs the
same as the first and nothing accumulates in memory. Writing them to SQLite
lives in :mod:`simulators.housing_store`. Never imports the hub.

Item shape (all strings unless said)::

    {"id": 17 (int, the source key), "permitNo": "370102202305010101",
     "projectName", "projectAddress", "buildingArea": "12580.36" (m²),
     "builder": {"name", "creditCode" (USCC)}, "orgId": "ZJJ-0102",
     "areaCode": "370102", "issueDate": "2023/05/01", "validFrom", "validTo",
     "contractPrice": "3560.25" (万元), "status": "VALID",
     "updatedAt": "2024-01-01T08:00:07+08:00"}

``orgId`` is the issuing bureau's internal id: its name, USCC and division come
from ``GET /api/v1/orgs/{orgId}`` (:func:`orgs`). ``status`` codes:
:data:`STATUS_CODES`. ``permitNo`` = project county (6) + issue date (8) +
serial (4), unique for up to 29 million items.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any

from simulators import defect_kit as kit
from simulators import market_data as vocab

DEFECT_KINDS: tuple[str, ...] = (
    "E_USCC_CHECK",
    "E_DATE_INVALID",
    "E_VALIDITY_WINDOW",
    "E_CODE_UNKNOWN",
    "E_DIVISION_UNKNOWN",
    "E_REQUIRED_MISSING",
    "E_FIELD_TOO_LONG",
    "E_ENCODING",
    "E_DUPLICATE",
    "E_VERSION_CONFLICT",
)
RELATIONAL = ("E_DUPLICATE", "E_VERSION_CONFLICT")
STATUS_CODES: dict[str, str] = {
    "VALID": "有效",
    "SUSPENDED": "暂停施工",
    "REVOKED": "吊销",
    "ANNULLED": "废止",
}
"""The department's permit status code list (code → meaning)."""
UNKNOWN_STATUSES = ("PENDING_X", "PENDING_REVIEW", "DRAFT", "VOID_9")
HOLDER_NAME_LIMIT = 200

_FIRST_ISSUE = date(2016, 1, 1)
_SPAN_DAYS = (date(2023, 12, 31) - _FIRST_ISSUE).days + 1  # 2922 = 2·3·487
_DATE_STEP = 1013  # coprime to _SPAN_DAYS: (issue date, serial) is unique per id
_SERIALS = 10_000
_UPDATED_BASE = datetime(2024, 1, 1, 8, 0, 0)
UPDATED_FMT = "%Y-%m-%dT%H:%M:%S+08:00"
_BUILDERS = 5000

_ESTATES = ("花园", "家园", "雅苑", "华府", "名苑", "新城", "御府", "学府", "公馆", "佳苑")
_PROJECT_KINDS = (
    "{trade}{estate}{phase}期{bno}#住宅楼",
    "{trade}{estate}{phase}期地下车库",
    "{county}{trade}产业园{phase}期{bno}#厂房",
    "{county}第{bno}实验小学教学楼建设工程",
    "{county}{street}片区棚户区改造安置房{bno}#楼",
    "{trade}商务中心{bno}#综合楼",
)
_BUILDER_KINDS = ("置业", "房地产开发", "城市建设投资", "实业", "建设发展")
_PHASES = "一二三四五"


def org_id(division: str) -> str:
    """The bureau id of a division: ``ZJJ-`` + prefecture and county digits."""
    return f"ZJJ-{division[2:6]}"


@functools.cache
def orgs() -> tuple[dict[str, str], ...]:
    """Every issuing bureau: {"orgId", "name", "creditCode", "areaCode"}."""
    out: list[dict[str, str]] = []
    for code, city in sorted(vocab.CITY_NAMES.items()):
        out.append(_org(code, f"{city}住房和城乡建设局"))
    for county in vocab.COUNTIES:
        prefix = county.name if county.name.endswith("市") else county.city_name + county.name
        out.append(_org(county.code, f"{prefix}住房和城乡建设局"))
    return tuple(out)


def _org(division: str, name: str) -> dict[str, str]:
    return {
        "orgId": org_id(division),
        "name": name,
        "creditCode": kit.agency_uscc(division, salt=2),
        "areaCode": division,
    }


def updated_at(item_id: int) -> str:
    """The item's initial ``updatedAt``: non-decreasing in id, three ids share a second."""
    return (_UPDATED_BASE + timedelta(seconds=7 * (item_id // 3))).strftime(UPDATED_FMT)


def fmt(d: date) -> str:
    return f"{d.year:04d}/{d.month:02d}/{d.day:02d}"


def _builder_of(seed: int, index: int) -> dict[str, str]:
    """A fresh copy of builder ``index`` (callers may change it)."""
    return dict(_cached_builder(seed, index))


@functools.lru_cache(maxsize=2 * _BUILDERS)
def _cached_builder(seed: int, index: int) -> tuple[tuple[str, str], ...]:
    return tuple(_builder(seed, index).items())


def _builder(seed: int, index: int) -> dict[str, str]:
    rng = random.Random(f"housing-builder:{seed}:{index}")
    county = rng.choice(vocab.COUNTIES)
    name = (
        f"{county.city_name[:-1]}{rng.choice(vocab.TRADE_NAMES)}"
        f"{rng.choice(_BUILDER_KINDS)}有限公司"
    )
    return {"name": name, "creditCode": kit.company_uscc("91", county.code, index, seed)}


def _issue_and_serial(item_id: int) -> tuple[date, str]:
    q, r = divmod(item_id - 1, _SERIALS)
    day = (q * _DATE_STEP + r * 389) % _SPAN_DAYS
    return _FIRST_ISSUE + timedelta(days=day), f"{r * 7919 % _SERIALS:04d}"


def clean_item(seed: int, item_id: int) -> dict[str, Any]:
    """The defect-free item ``item_id`` (before any defect is applied)."""
    rng = random.Random(f"housing:{seed}:{item_id}")
    county = rng.choice(vocab.COUNTIES)
    issuer = county.city_code if rng.random() < 0.15 else county.code
    issued, serial = _issue_and_serial(item_id)
    valid_from = issued + timedelta(days=rng.randint(0, 15))
    valid_to = kit.add_years(valid_from, rng.randint(1, 3)) - timedelta(days=1)
    street = rng.choice(vocab.STREETS)
    project = rng.choice(_PROJECT_KINDS).format(
        trade=rng.choice(vocab.TRADE_NAMES),
        estate=rng.choice(_ESTATES),
        phase=rng.choice(_PHASES),
        bno=rng.randint(1, 30),
        county=county.name,
        street=street,
    )
    return {
        "id": item_id,
        "permitNo": f"{county.code}{fmt(issued).replace('/', '')}{serial}",
        "projectName": project,
        "projectAddress": project_address(county, rng),
        "buildingArea": f"{rng.uniform(800, 180_000):.2f}",
        "builder": _builder_of(seed, rng.randrange(_BUILDERS)),
        "orgId": org_id(issuer),
        "areaCode": county.code,
        "issueDate": fmt(issued),
        "validFrom": fmt(valid_from),
        "validTo": fmt(valid_to),
        "contractPrice": f"{rng.uniform(150, 95_000):.2f}",
        "status": rng.choices(tuple(STATUS_CODES), weights=(90, 2, 3, 5))[0],
        "updatedAt": updated_at(item_id),
    }


def project_address(county: vocab.County, rng: random.Random) -> str:
    a, b = rng.sample(vocab.STREETS, 2)
    return (
        f"山东省{county.city_name}{county.name}{a}以{rng.choice('南北')}、{b}以{rng.choice('东西')}"
    )


def _county_of(item: dict[str, Any]) -> vocab.County:
    code = str(item["permitNo"])[:6]
    return next(c for c in vocab.COUNTIES if c.code == code)


def make_item(seed: int, item_id: int, defect: str | None, original: int | None) -> dict[str, Any]:
    """Item ``item_id`` carrying ``defect`` (None: clean); ``original`` for duplicates/conflicts."""
    if defect in RELATIONAL:
        if original is None or original >= item_id:
            raise ValueError(f"{defect} of item {item_id} needs an earlier original")
        item = clean_item(seed, original)
        item["id"], item["updatedAt"] = item_id, updated_at(item_id)
        if defect == "E_VERSION_CONFLICT":
            # Another project address and an extended validity: same permit, other content.
            rng = random.Random(f"housing-conflict:{seed}:{item_id}")
            before = item["projectAddress"]
            while item["projectAddress"] == before:
                item["projectAddress"] = project_address(_county_of(item), rng)
            valid_to = datetime.strptime(item["validTo"], "%Y/%m/%d").date()
            item["validTo"] = fmt(kit.add_years(valid_to, 1))
        return item
    item = clean_item(seed, item_id)
    if defect is not None:
        _inject(item, defect, random.Random(f"housing-defect:{seed}:{item_id}"))
    return item


def _inject(item: dict[str, Any], defect: str, rng: random.Random) -> None:
    """Apply exactly one non-relational defect; every other field stays valid."""
    builder = item["builder"]
    if defect == "E_USCC_CHECK":
        builder["creditCode"] = kit.wrong_uscc_check(builder["creditCode"], rng)
    elif defect == "E_DATE_INVALID":
        field = "issueDate" if rng.random() < 0.7 else "validTo"
        item[field] = kit.impossible_date(int(item[field][:4]), rng, "/")
    elif defect == "E_VALIDITY_WINDOW":
        start = datetime.strptime(item["validFrom"], "%Y/%m/%d").date()
        item["validTo"] = fmt(start - timedelta(days=rng.randint(1, 365)))
    elif defect == "E_CODE_UNKNOWN":
        item["status"] = rng.choice(UNKNOWN_STATUSES)
    elif defect == "E_DIVISION_UNKNOWN":
        item["areaCode"] = rng.choice(kit.UNKNOWN_DIVISIONS)
    elif defect == "E_REQUIRED_MISSING":
        if rng.random() < 0.5:
            item["permitNo"] = kit.blank(rng)
        else:
            builder["name"] = kit.blank(rng)
    elif defect == "E_FIELD_TOO_LONG":
        members = (_builder(0, rng.randrange(_BUILDERS))["name"] for _ in range(40))
        builder["name"] = kit.long_name(builder["name"], rng, members)
    elif defect == "E_ENCODING":
        builder["name"] = kit.mojibake(builder["name"], rng)
    else:
        raise ValueError(f"unknown defect kind {defect!r}; expected one of {DEFECT_KINDS}")


def plan(count: int, defect_rate: float, seed: int) -> tuple[dict[int, str], dict[int, int]]:
    """(id → defect kind, id → original id of a duplicate/conflict).

    round(count × rate) ids are defective. A duplicate or conflict copies an
    earlier clean item that nothing else copies; when no such item is left (the
    first few ids), the id gets a non-relational kind instead, so the report
    stays exact.
    """
    kinds = kit.plan_defects(count, defect_rate, seed, DEFECT_KINDS)
    rng = random.Random(f"housing-originals:{seed}")
    originals: dict[int, int] = {}
    used: set[int] = set()
    fallback = iter(k for _ in range(count + 1) for k in DEFECT_KINDS if k not in RELATIONAL)
    for item_id, kind in list(kinds.items()):
        if kind not in RELATIONAL:
            continue
        found = None
        for _ in range(64):
            candidate = rng.randrange(1, item_id) if item_id > 1 else 0
            if candidate and candidate not in kinds and candidate not in used:
                found = candidate
                break
        if found is None:
            kinds[item_id] = next(fallback)
            continue
        used.add(found)
        originals[item_id] = found
    return kinds, originals


def iter_items(count: int, *, seed: int = 0, defect_rate: float = 0.05) -> Iterator[dict[str, Any]]:
    """Every item in id order (= read order), without a database."""
    kinds, originals = plan(count, defect_rate, seed)
    for item_id in range(1, count + 1):
        yield make_item(seed, item_id, kinds.get(item_id), originals.get(item_id))


def report(count: int, *, seed: int = 0, defect_rate: float = 0.05) -> kit.GeneratorReport:
    """What :func:`iter_items` (and the dataset) carries; keys are item ids."""
    kinds, _ = plan(count, defect_rate, seed)
    return kit.make_report(count, DEFECT_KINDS, ((k, i) for i, k in sorted(kinds.items())))
