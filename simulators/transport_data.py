"""Licenses of the simulated transport department (交通运输厅): 道路运输经营许可证.

Builds the ``license`` object of the department's events (see
:mod:`simulators.transport_events`) and the one-defect variants of it. Pure and
deterministic: a license is a function of (seed, serial). Never imports the hub.

License fields (department pinyin abbreviations; all strings but ``bbh``):

| field | meaning |
|---|---|
| zzbs | 证照标识, GB/T 36904 ``1.2.156.3005.2.<type>.<issuer USCC>.<serial>.001.<check>`` |
| bbh | 版本号, int 1, 2, 3 … per zzbs |
| xkzh | 许可证号, e.g. ``鲁交运管许可济字370102000017号`` |
| yhmc / tyshxydm | 业户名称 holder name / its USCC |
| jyfw | 经营范围 |
| dz | 地址 holder address |
| xzqh | holder division (GB/T 2260, 6 digits) |
| fzjg / fzjgdm | issuing bureau name / USCC |
| fzrq | issue date ``YYYYMMDD`` |
| yxqq / yxqz | validity start / end ``YYYYMMDD`` |
| zt | status: :data:`STATUS_CODES` |
"""

from __future__ import annotations

import functools
import random
from datetime import date, timedelta
from typing import Any

from simulators import defect_kit as kit
from simulators import market_data as vocab
from simulators.checks import LICENSE_ID_ROOT, mod37_36_check

TYPE_CODE = "11100000000013338W006"
"""道路运输经营许可证 in schemas/codelists/license_types.json (an unconfirmed default there)."""
STATUS_CODES: dict[str, str] = {"10": "有效", "20": "吊销", "30": "注销", "40": "暂停"}
"""The department's status code list (zt)."""
UNKNOWN_STATUSES = ("99", "00", "50", "1")
VALID, REVOKED, CANCELLED, SUSPENDED = "10", "20", "30", "40"

_CITY_ABBR = {"370100": "济", "370200": "青", "370400": "枣", "370600": "烟", "370900": "泰"}
_SCOPES = (
    "道路普通货物运输",
    "货物专用运输（集装箱）",
    "货物专用运输（冷藏保鲜设备）",
    "大型物件运输",
    "道路危险货物运输（2类1项、3类）",
    "道路旅客运输（县内班车客运）",
    "道路旅客运输（包车客运）",
)
_KINDS = ("物流有限公司", "运输有限公司", "货运有限公司", "汽车运输有限公司", "客运有限公司")
_FIRST_ISSUE = date(2016, 1, 1)
_LAST_ISSUE = date(2023, 12, 31)


@functools.cache
def issuer(division: str) -> tuple[str, str]:
    """Name and USCC of the transport bureau of a division."""
    if division.endswith("00"):
        name = f"{vocab.CITY_NAMES[division]}交通运输局"
    else:
        county = next(c for c in vocab.COUNTIES if c.code == division)
        prefix = county.name if county.name.endswith("市") else county.city_name + county.name
        name = f"{prefix}交通运输局"
    return name, kit.agency_uscc(division, salt=3)


def license_id(issuer_code: str, serial: str) -> str:
    """A valid GB/T 36904 identifier of a road transport permit."""
    check = mod37_36_check(TYPE_CODE + issuer_code + serial + "001")
    return f"{LICENSE_ID_ROOT}{TYPE_CODE}.{issuer_code}.{serial}.001.{check}"


def ymd(d: date) -> str:
    return f"{d.year:04d}{d.month:02d}{d.day:02d}"


def parse_ymd(text: str) -> date:
    return date(int(text[:4]), int(text[4:6]), int(text[6:8]))


def address(county: vocab.County, rng: random.Random) -> str:
    return (
        f"山东省{county.city_name}{county.name}{rng.choice(vocab.STREETS)}{rng.randint(1, 999)}号"
    )


def county_of(lic: dict[str, Any]) -> vocab.County:
    return next(c for c in vocab.COUNTIES if c.code == lic["xzqh"])


def new_license(seed: int, serial: int) -> tuple[dict[str, Any], list[str]]:
    """License ``serial`` at version 1 and the event types of its later history."""
    rng = random.Random(f"transport:{seed}:{serial}")
    county = rng.choice(vocab.COUNTIES)
    division = county.city_code if rng.random() < 0.2 else county.code
    name, code = issuer(division)
    person = rng.random() < 0.15
    if person:
        given = "".join(rng.choice(vocab.GIVEN_CHARS) for _ in range(rng.choice((1, 2))))
        holder = f"{county.name}{rng.choice(vocab.SURNAMES)}{given}货运部"
    else:
        holder = f"{county.city_name[:-1]}{rng.choice(vocab.TRADE_NAMES)}{rng.choice(_KINDS)}"
    issued = kit.day_range(_FIRST_ISSUE, _LAST_ISSUE, rng)
    scopes = rng.sample(_SCOPES[:4] if person else _SCOPES, k=rng.choice((1, 1, 2)))
    lic = {
        "zzbs": license_id(code, f"{division}{serial:08d}"),
        "bbh": 1,
        "xkzh": f"鲁交运管许可{_CITY_ABBR[county.city_code]}字{division}{serial:06d}号",
        "yhmc": holder,
        "tyshxydm": kit.company_uscc("92" if person else "91", county.code, serial, seed),
        "jyfw": "、".join(scopes),
        "dz": address(county, rng),
        "xzqh": county.code,
        "fzjg": name,
        "fzjgdm": code,
        "fzrq": ymd(issued),
        "yxqq": ymd(issued),
        "yxqz": ymd(kit.add_years(issued, 4) - timedelta(days=1)),
        "zt": VALID,
    }
    steps: list[str] = []
    if rng.random() < 0.35:
        steps.append("CHANGED")
    end = rng.random()
    if end < 0.12:
        steps.append("REVOKED")
    elif end < 0.22:
        steps.append("CANCELLED")
    elif end < 0.26:
        steps.append("SUSPENDED")
    return lic, steps


def advance(lic: dict[str, Any], event_type: str, rng: random.Random) -> dict[str, Any]:
    """The next version of a license for a history event (a new dict)."""
    nxt = {**lic, "bbh": lic["bbh"] + 1}
    if event_type == "CHANGED":
        while nxt["dz"] == lic["dz"]:
            nxt["dz"] = address(county_of(lic), rng)
    else:
        nxt["zt"] = {"REVOKED": REVOKED, "CANCELLED": CANCELLED, "SUSPENDED": SUSPENDED}[event_type]
    return nxt


def conflicting(lic: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """Same zzbs and bbh, other content: another address and a validity end a year later."""
    out = dict(lic)
    while out["dz"] == lic["dz"]:
        out["dz"] = address(county_of(lic), rng)
    out["yxqz"] = ymd(kit.add_years(parse_ymd(lic["yxqz"]), 1))
    return out


def reinstated(lic: dict[str, Any], seen_addresses: set[str], rng: random.Random) -> dict[str, Any]:
    """A revoked/cancelled license set back to valid at the next version, at a new address.

    The new address keeps the record's content unlike every earlier version, so
    the hub can only see the illegal transition, not a duplicate.
    """
    out = {**lic, "bbh": lic["bbh"] + 1, "zt": VALID}
    while out["dz"] in seen_addresses:
        out["dz"] = address(county_of(lic), rng)
    return out


def inject(lic: dict[str, Any], defect: str, rng: random.Random) -> dict[str, Any]:
    """A copy of ``lic`` with exactly one non-relational defect."""
    out = dict(lic)
    if defect == "E_LICENSE_ID_CHECK":
        out["zzbs"] = kit.wrong_alnum_check(lic["zzbs"], rng)
    elif defect == "E_USCC_CHECK":
        out["tyshxydm"] = kit.wrong_uscc_check(lic["tyshxydm"], rng)
    elif defect == "E_DATE_INVALID":
        field = rng.choice(("fzrq", "yxqz"))
        out[field] = kit.impossible_date(int(lic[field][:4]), rng, "")
    elif defect == "E_VALIDITY_WINDOW":
        out["yxqz"] = ymd(parse_ymd(lic["yxqq"]) - timedelta(days=rng.randint(1, 720)))
    elif defect == "E_CODE_UNKNOWN":
        out["zt"] = rng.choice(UNKNOWN_STATUSES)
    elif defect == "E_REQUIRED_MISSING":
        out["yhmc"] = kit.blank(rng)
    elif defect == "E_DIVISION_UNKNOWN":
        out["xzqh"] = rng.choice(kit.UNKNOWN_DIVISIONS)
    elif defect == "E_ENCODING":
        field = "yhmc" if rng.random() < 0.6 else "dz"
        out[field] = kit.mojibake(lic[field], rng)
    else:
        raise ValueError(f"unknown defect kind {defect!r}")
    return out
