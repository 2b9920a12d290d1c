"""Irreversible masking of personal data (脱敏) for logs and feeds.

Pure string functions. The default policy of the return feeds masks every
person's name and identity number; per-office policies come with the office
registry.
"""

from __future__ import annotations

import re

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
