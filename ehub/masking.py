"""Irreversible masking of personal data (脱敏) for logs and feeds.

Pure string functions. The default policy of the return feeds masks every
person's name and identity number; per-office policies (which fields an office
sees, and which masking each one gets) live in :mod:`ehub.routing`.

Every function keeps a fixed part of the value and replaces the rest: the
output depends only on the kept characters (and, for names and numbers, the
length), so nothing of the hidden part can be recovered from it.
"""

from __future__ import annotations

import functools
import re

from ehub import divisions

_ID18 = re.compile(r"^\d{17}[\dXx]$")
_PHONE = re.compile(r"^1\d{10}$")


def mask_name(name: str) -> str:
    """张三 → 张*, 欧阳娜娜 → 欧***."""
    name = name.strip()
    if len(name) <= 1:
        return "*" if name else ""
    return name[0] + "*" * (len(name) - 1)


def mask_id_number(value: str) -> str:
    """Keep the 6-digit region and the last four characters of a citizen ID."""
    v = value.strip()
    if _ID18.match(v):
        return v[:6] + "*" * 8 + v[-4:]
    if len(v) <= 4:
        return "*" * len(v)
    return "*" * (len(v) - 4) + v[-4:]


def mask_phone(value: str) -> str:
    """13812345678 → 138****5678."""
    v = value.strip()
    if _PHONE.match(v):
        return v[:3] + "****" + v[-4:]
    return mask_id_number(v)


#: Surface fields of license types that hold a person's name.
PERSON_NAME_FIELDS = frozenset({"KZ_FDDBR", "KZ_FZR", "KZ_JYZ"})


def mask_license_document(doc: dict[str, object]) -> dict[str, object]:
    """Default feed policy for a license's JSON form: person names and ID numbers masked."""
    out = dict(doc)
    kz = dict(out.get("KZ") or {})  # type: ignore[call-overload]
    for k in PERSON_NAME_FIELDS & kz.keys():
        kz[k] = mask_name(str(kz[k]))
    out["KZ"] = kz
    if out.get("CZZTDMLXDM") == "111":  # the holder is a person
        out["CZZT"] = mask_name(str(out.get("CZZT", "")))
        out["CZZTDM"] = mask_id_number(str(out.get("CZZTDM", "")))
    return out


#: What replaces the hidden part of an address: fixed, so the length of the
#: street address (a hint at it) is not revealed either.
ADDRESS_HIDDEN = "****"

# Generic fallback for addresses outside the division table (other provinces):
# [province] city [district], each name made of characters that do not occur in
# street addresses, so the match can never run on into the street part. A
# district is only recognised after a city: a bare "幸福小区" is not a district.
_N = r"[^\s\d省市区县旗路街道巷弄号村组镇乡楼栋室单元座#()（）,，.、-]"
_FALLBACK = re.compile(
    rf"(?:{_N}{{2,7}}(?:省|自治区))?{_N}{{2,9}}(?:市|自治州|地区|盟)"
    rf"(?:{_N}{{1,7}}(?:区|县|市|旗))?"
)


@functools.cache
def _place_names() -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(province, prefecture, county) names of the division table, longest first."""
    counties = divisions.counties("")
    parents = [divisions.lookup(c) for c in {d.parent for d in counties if d.parent}]
    prefectures = {d.name for d in parents if d is not None and d.level == "prefecture"}
    provinces = {d.name for d in parents if d is not None and d.level == "province"}
    provinces |= {
        d.name for d in (divisions.lookup(c.code[:2] + "0000") for c in counties) if d is not None
    }

    def by_length(xs: set[str]) -> tuple[str, ...]:
        return tuple(sorted(xs, key=lambda x: (-len(x), x)))

    return by_length(provinces), by_length(prefectures), by_length({d.name for d in counties})


def _district_end(v: str) -> int:
    """Length of the leading "province + city + district" part of an address (0 if none)."""
    provinces, prefectures, counties = _place_names()
    pos = 0
    for group in (provinces, prefectures):
        pos += next((len(n) for n in group if v.startswith(n, pos)), 0)
    county = next((len(n) for n in counties if v.startswith(n, pos)), 0)
    if county:
        return pos + county
    m = _FALLBACK.match(v)
    return max(pos, m.end() if m else 0)


def mask_address(value: str) -> str:
    """Keep the address up to and including the district, hide the rest.

    ``山东省烟台市芝罘区南大街100号`` → ``山东省烟台市芝罘区****``. The district
    is the county-level division after the (optional) province and city: names
    come from the GB/T 2260 table of Shandong (so 市中区 or 龙口市 are read
    right), with a generic 省/市/区县旗 pattern for other provinces. When no
    district can be found, only the province and city are kept (or nothing):
    the policy errs on the side of hiding.
    """
    v = value.strip()
    keep = _district_end(v)
    if keep >= len(v):
        return v
    return v[:keep] + ADDRESS_HIDDEN
