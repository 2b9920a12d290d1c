"""Identifier and date checks owned by the simulators.

The simulators stand in for external systems, so they must not reuse the hub's
validation code: a bug shared by both sides would go unnoticed. Everything here
is an independent implementation written from the published algorithms
(GB 32100-2015, GB 11714-1997, GB/T 36904-2018 with ISO/IEC 7064 MOD 37,36,
ISO/IEC 7064 MOD 11,10 for the legacy 15-digit registration number).

Pure functions only: no I/O, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable
from datetime import date, datetime
from typing import TypeVar

USCC_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_VALUES = {ch: i for i, ch in enumerate(USCC_CHARSET)}
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"

K = TypeVar("K")

LICENSE_ID_ROOT = "1.2.156.3005.2."
_USCC_SHAPE = re.compile(r"^[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}$")
_DATE_DASHED = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_DATE_COMPACT = re.compile(r"^(\d{4})(\d{2})(\d{2})$")


def org_code_check(body8: str) -> str:
    """GB 11714 check character of an 8-character organization code body."""
    total = sum(_ALNUM.index(ch) * w for ch, w in zip(body8, _ORG_WEIGHTS, strict=True))
    c = 11 - total % 11
    return "X" if c == 10 else "0" if c == 11 else str(c)


def uscc_check_char(first17: str) -> str:
    """GB 32100 check character over the first 17 characters of a USCC."""
    total = sum(_USCC_VALUES[ch] * w for ch, w in zip(first17, _USCC_WEIGHTS, strict=True))
    return USCC_CHARSET[(31 - total % 31) % 31]


def make_uscc(dept_class: str, division: str, org_body8: str) -> str:
    """Compose a valid USCC from its parts (the org-code check is computed too)."""
    first17 = dept_class + division + org_body8 + org_code_check(org_body8)
    return first17 + uscc_check_char(first17)


def uscc_is_valid(code: str | None) -> bool:
    """True when ``code`` is an 18-char USCC whose GB 32100 check character matches."""
    if not code or not _USCC_SHAPE.match(code):
        return False
    return uscc_check_char(code[:17]) == code[17]


def mod37_36_check(chars: str) -> str:
    """ISO/IEC 7064 MOD 37,36 (hybrid) check character over upper-case alphanumerics."""
    p = 36
    for ch in chars:
        s = (p + _ALNUM.index(ch)) % 36 or 36
        p = (2 * s) % 37
    for c in range(36):
        if (p + c) % 36 == 1:
            return _ALNUM[c]
    raise AssertionError("unreachable: MOD 37,36 always has a solution")


def license_identifier_problem(identifier: str) -> str | None:
    """Why a GB/T 36904 license identifier is malformed, or None when it is valid."""
    if not identifier.startswith(LICENSE_ID_ROOT):
        return f"identifier must start with {LICENSE_ID_ROOT!r}"
    parts = identifier[len(LICENSE_ID_ROOT) :].split(".")
    if len(parts) != 5:
        return "identifier must have 5 segments after the root: type.issuer.serial.version.check"
    type_code, issuer, serial, version, check = parts
    for name, seg in (("type code", type_code), ("issuer code", issuer), ("serial", serial)):
        if not seg or any(ch not in _ALNUM for ch in seg):
            return f"{name} segment {seg!r} must be non-empty upper-case alphanumerics"
    if len(issuer) != 18:
        return f"issuer code segment {issuer!r} must be an 18-char USCC"
    if not (len(version) == 3 and version.isdigit()):
        return f"version segment {version!r} must be 3 digits"
    if len(check) != 1 or check not in _ALNUM:
        return f"check segment {check!r} must be one character 0-9A-Z"
    expected = mod37_36_check(type_code + issuer + serial + version)
    if expected != check:
        return f"check character is {check!r}, MOD 37,36 gives {expected!r}"
    return None


def registration_number(division: str, seq8: int) -> str:
    """A legacy 15-digit business registration number (ISO 7064 MOD 11,10 check)."""
    digits = f"{division}{seq8:08d}"
    p = 10
    for ch in digits:
        s = (p + int(ch)) % 10 or 10
        p = (2 * s) % 11
    return digits + str((11 - p) % 10)


def parse_legacy_date(text: str | None) -> date | None:
    """Parse 'YYYY-MM-DD' or 'YYYYMMDD'; None when empty, malformed or impossible."""
    if not text:
        return None
    m = _DATE_DASHED.match(text) or _DATE_COMPACT.match(text)
    if not m:
        return None
    try:
        return date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        return None


_RIC_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def citizen_id_is_valid(code: str | None) -> bool:
    """GB 11643 citizen ID number: 17 digits + MOD 11-2 check, with a real birth date."""
    if not code or len(code) != 18 or not code[:17].isdigit():
        return False
    if parse_legacy_date(code[6:14]) is None:
        return False
    total = sum(int(ch) * w for ch, w in zip(code[:17], _RIC_WEIGHTS, strict=True))
    return "10X98765432"[total % 11] == code[17].upper()


# --- record-content checks (defect verification for the department generators) ---

FIELD_LIMIT = 200
"""Longest holder / applicant / project name the hub accepts (notes/common.md)."""
_MOJIBAKE = re.compile("\ufffd|锟斤拷|[\u00c0-\u00ef][\u0080-\u00bf]{2}")
_HALFWIDTH = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}
_CN_DATE = re.compile(r"^(\d{4})年(\d{1,2})月(\d{1,2})日$")
_TIMESTAMP = re.compile(r"^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})$")


def is_blank(value: str | None) -> bool:
    """A missing required value: None, empty, or only whitespace (U+3000 included)."""
    return value is None or not value.strip()


def has_mojibake(text: str | None) -> bool:
    """U+FFFD, GBK's "锟斤拷", or UTF-8 bytes read as Latin-1 (lead + 2 continuations)."""
    return bool(text) and _MOJIBAKE.search(text or "") is not None


def to_halfwidth(text: str) -> str:
    """Full-width ASCII forms (U+FF01..FF5E) and U+3000 to their half-width forms."""
    return text.translate(_HALFWIDTH)


def normalized(text: str | None) -> str:
    """Trimmed, half-width text ('' for None): what a department's value means."""
    return to_halfwidth(text or "").strip()


def parse_cn_date(text: str | None) -> date | None:
    """Parse ``YYYY年M月D日`` (zero padding optional); None when malformed or impossible."""
    m = _CN_DATE.match(text or "")
    if not m:
        return None
    try:
        return date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        return None


def parse_timestamp(text: str | None) -> datetime | None:
    """Parse ``YYYY-MM-DD HH:MM:SS``; None when empty, malformed or impossible."""
    m = _TIMESTAMP.match(text or "")
    if not m:
        return None
    try:
        y, mo, d, h, mi, sec = (int(g) for g in m.groups())
        return datetime(y, mo, d, h, mi, sec)
    except ValueError:
        return None


def citizen_id_check_char(first17: str) -> str:
    """GB 11643 MOD 11-2 check character over the first 17 digits."""
    total = sum(int(ch) * w for ch, w in zip(first17, _RIC_WEIGHTS, strict=True))
    return "10X98765432"[total % 11]


def make_citizen_id(division: str, birth: date, sequence: int) -> str:
    """A valid 18-char citizen ID number (odd ``sequence`` = male)."""
    first17 = f"{division}{birth:%Y%m%d}{sequence % 1000:03d}"
    return first17 + citizen_id_check_char(first17)


def repeat_defects(records: Iterable[tuple[K, Hashable, Hashable]]) -> dict[K, str]:
    """Key → E_DUPLICATE / E_VERSION_CONFLICT for records repeating an earlier one.

    ``records`` are ``(source key, natural key, content)`` in read order, only
    those without a single-record defect. The first record of a natural key is
    the original; a later one with another source key is a duplicate when its
    content is equal, a conflicting version otherwise.
    """
    first: dict[Hashable, tuple[K, Hashable]] = {}
    found: dict[K, str] = {}
    for key, natural, content in records:
        seen = first.setdefault(natural, (key, content))
        if seen[0] != key:
            found[key] = "E_DUPLICATE" if seen[1] == content else "E_VERSION_CONFLICT"
    return found
