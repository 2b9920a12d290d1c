"""Records other departments gave the provincial platform (not through this hub).

The provincial platform's return interface hands back every version it holds for
a division — the hub's own deliveries and these. The dev stack and the demo seed
them with ``POST /admin/return/records`` so the hub's return intake has other
departments' data to route to its offices. Deterministic for a seed; the values
are fictitious but well-formed (real Shandong county codes, ID numbers with a
valid check digit).
"""

from __future__ import annotations

import random
from typing import Any

# Real county codes of Shandong: Jinan, Qingdao, Zibo, Zaozhuang, Yantai, Weifang, Tai'an.
COUNTIES = ("370102", "370202", "370303", "370402", "370602", "370611", "370705", "370902")
# A department outside the hub: the provincial public security department's licenses.
ISSUER = ("山东省公安厅", "11370000004175004X", "370000")
LICENSE_TYPE = ("11100000000013338W010", "机动车驾驶证")
SURNAMES = "王李张刘陈杨赵黄周吴"
WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def _id_number(rng: random.Random, county: str) -> str:
    body = f"{county}19{rng.randint(50, 99)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
    body += f"{rng.randint(0, 999):03d}"
    return body + "10X98765432"[sum(int(c) * w for c, w in zip(body, WEIGHTS, strict=True)) % 11]


def _name(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + "".join(rng.choice("伟芳娜敏静丽强磊军洋") for _ in range(2))


def license_record(i: int, rng: random.Random) -> dict[str, Any]:
    county = COUNTIES[i % len(COUNTIES)]
    issuer, issuer_code, issuer_division = ISSUER
    type_code, type_name = LICENSE_TYPE
    return {
        "ZZBS": f"1.2.156.3005.2.{type_code}.{issuer_code}.{i:07d}.001.0",
        "ZZLXDM": type_code, "ZZMC": type_name, "ZZBH": f"JZ{i:08d}",
        "ZZBFJG": issuer, "ZZBFJGDM": issuer_code, "ZZBFJGQHDM": issuer_division,
        "ZZBFRQ": "2026-03-01", "ZZYXQQSRQ": "2026-03-01", "ZZYXQJZRQ": "2032-03-01",
        "CZZT": _name(rng), "CZZTDM": _id_number(rng, county), "CZZTDMLXDM": "111",
        "CZZTDMLX": "居民身份证", "CZZTQHDM": county, "ZZZT": "valid", "BBH": 1,
        "KZ": {"KZ_ZJCX": "C1"}, "GLBJBH": None,
    }  # fmt: skip


def case_record(i: int, rng: random.Random) -> dict[str, Any]:
    county = COUNTIES[i % len(COUNTIES)]
    return {
        "BJBH": f"OD{county}{i:010d}", "BBH": 1, "SXBM": "37000000GA0001",
        "SXMC": "机动车驾驶证换证", "SQRMC": _name(rng), "SQRZJHM": _id_number(rng, county),
        "SQRZJLX": "111", "SLJGMC": "山东省公安厅交通管理局", "XZQHDM": county,
        "SLSJ": "2026-03-01T09:00:00+08:00", "BJSJ": "2026-03-02T10:00:00+08:00",
        "BJJGDM": "1", "BJJG": "准予许可",
    }  # fmt: skip


def generate(count: int, *, seed: int = 1) -> list[dict[str, Any]]:
    """``count`` items for ``POST /admin/return/records``: three licenses to one case."""
    rng = random.Random(seed)
    return [
        {"kind": "case", "record": case_record(i, rng)}
        if i % 4 == 3
        else {"kind": "license", "record": license_record(i, rng)}
        for i in range(count)
    ]
