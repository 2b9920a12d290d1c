"""What of a quarantined record may be shown: the masking policy (脱敏) applied to
quarantine values and raw payloads in listings, ``show`` and rejects reports.

Built on the pure string functions of :mod:`ehub.masking`. Raw payloads carry
department column names, so besides canonical field codes the policy knows the
usual legacy person-name columns and masks every ID-number- and mobile-number-
shaped value wherever it appears. Pure functions; no store, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ehub import masking

__all__ = [
    "HOLDER_CODE_FIELDS",
    "HOLDER_NAME_FIELDS",
    "PERSON_NAME_COLUMNS",
    "PERSON_NAME_FIELDS",
    "is_person_record",
    "mask_payload",
    "mask_value",
]

#: Canonical fields that hold a person's name whoever the holder is.
PERSON_NAME_FIELDS = masking.PERSON_NAME_FIELDS
#: Canonical fields that hold a name or an ID number only when the holder/applicant is a person.
HOLDER_NAME_FIELDS = frozenset({"CZZT", "SQRMC"})
HOLDER_CODE_FIELDS = frozenset({"CZZTDM", "SQRZJHM"})
#: Source columns (legacy department names and canonical codes) holding a person's name.
PERSON_NAME_COLUMNS = frozenset(
    {"FDDBR", "FZR", "JYZ", "XM", "SQRXM", "LXR", "JBR", "KZ_FDDBR", "KZ_FZR", "KZ_JYZ"}
)
_PERSON_CODE_TYPE_COLUMNS = ("CZZTDMLXDM", "SQRZJLX")
_CID_LIKE = r"[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx]"
_CID_FULL = re.compile(_CID_LIKE)
_SENSITIVE = re.compile(rf"(?<![0-9A-Za-z])(?:({_CID_LIKE})|(1[3-9]\d{{9}}))(?![0-9A-Za-z])")


def _mask_text(value: str) -> str:
    """Mask every ID-number-shaped and mobile-number-shaped run inside ``value``."""

    def sub(m: re.Match[str]) -> str:
        return masking.mask_id_number(m[1]) if m[1] else masking.mask_phone(m[2])

    return _SENSITIVE.sub(sub, value)


def is_person_record(payload: Mapping[str, Any]) -> bool:
    """True when the raw record is about a person: it carries a citizen-ID-shaped
    value or declares a person's holder/applicant code type (111)."""
    for k in _PERSON_CODE_TYPE_COLUMNS:
        if str(payload.get(k) or "").strip() == "111":
            return True
    return any(isinstance(v, str) and _CID_FULL.fullmatch(v.strip()) for v in payload.values())


def mask_value(
    reason_code: str, field: str, value: str | None, *, person: bool = False
) -> str | None:
    """The offending value of a quarantine row as it may be shown or sent back.

    ``person`` says the record is about a person (:func:`is_person_record`):
    then the holder/applicant name and code are masked as well.
    """
    if value is None:
        return None
    if reason_code.startswith("E_CITIZEN_ID") or (person and field in HOLDER_CODE_FIELDS):
        return masking.mask_id_number(value)
    if field in PERSON_NAME_FIELDS or (person and field in HOLDER_NAME_FIELDS):
        return masking.mask_name(value)
    return _mask_text(value)


def mask_payload(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a raw payload with person names, ID numbers and phone numbers masked."""
    person = is_person_record(payload)
    return {k: _mask_item(k, v, person) for k, v in payload.items()}


def _mask_item(key: str, value: Any, person: bool) -> Any:
    if isinstance(value, Mapping):
        return {k: _mask_item(str(k), v, person) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_item(key, v, person) for v in value]
    if not isinstance(value, str):
        return value
    k = key.upper()
    if k in PERSON_NAME_COLUMNS or (person and k in HOLDER_NAME_FIELDS):
        return masking.mask_name(value)
    return _mask_text(value)
