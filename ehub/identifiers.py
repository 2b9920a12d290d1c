"""Check characters and formats of the identifiers the hub speaks (STANDARDS.md §1–2).

- USCC 统一社会信用代码 (GB 32100-2015), with the embedded organization code
  (GB 11714-1997) sub-check;
- citizen ID number 居民身份证号码 (GB 11643-1999, ISO 7064 MOD 11-2);
- organization code 组织机构代码 (GB 11714-1997);
- the e-license identifier 证照标识 (GB/T 36904-2018, ISO/IEC 7064 MOD 37,36 hybrid);
- a deterministic serial for licenses whose source carries no identifier.

Everything here is pure: no clock, no network, no tables. ``check_*`` functions
return the normalized value or raise :class:`ehub.errors.IdentifierError` with a
reason code from ``schemas/codelists/reason_codes.json``; ``is_valid_*`` never raise.
Division codes live in :mod:`ehub.divisions` because they need a table.
"""

from __future__ import annotations

import calendar
import functools
import hashlib
import operator
import re
import unicodedata
from dataclasses import dataclass
from datetime import date

from ehub.errors import IdentifierError

__all__ = [
    "LICENSE_ID_ROOT",
    "LicenseIdentifier",
    "check_citizen_id",
    "check_uscc",
    "citizen_id_check_char",
    "is_valid_citizen_id",
    "is_valid_license_identifier",
    "is_valid_org_code",
    "is_valid_uscc",
    "make_license_identifier",
    "mod37_36_check_char",
    "normalize",
    "org_code_check_char",
    "parse_license_identifier",
    "serial_from_key",
    "uscc_check_char",
]

# --- USCC (GB 32100-2015) -----------------------------------------------------

_USCC_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # values 0..30; no I O S V Z
_USCC_VALUE = {c: i for i, c in enumerate(_USCC_CHARSET)}
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_USCC_RE = re.compile(r"[0-9A-HJ-NPQRTUWXY]{18}")


def normalize(value: str) -> str:
    """Fold full-width characters (NFKC), strip surrounding blanks, upper-case.

    Department systems often hand over full-width digits or a lower-case ``x``.
    """
    return unicodedata.normalize("NFKC", value).strip().upper()


def uscc_check_char(first17: str) -> str:
    """The 18th character of a USCC whose first 17 characters are ``first17``."""
    if len(first17) != 17:
        raise ValueError("first17 must be 17 characters of the USCC charset")
    try:
        total = sum(map(operator.mul, map(_USCC_VALUE.__getitem__, first17), _USCC_WEIGHTS))
    except KeyError:
        raise ValueError("first17 must be 17 characters of the USCC charset") from None
    return _USCC_CHARSET[(31 - total % 31) % 31]


def is_valid_uscc(s: str, *, check_org_code: bool = True) -> bool:
    """True if ``s`` is a well-formed USCC whose check character(s) verify."""
    try:
        check_uscc(s, check_org_code=check_org_code)
    except IdentifierError:
        return False
    return True


def check_uscc(s: str, field: str = "uscc", *, check_org_code: bool = True) -> str:
    """Return the normalized USCC or raise IdentifierError.

    Reason codes: ``E_USCC_FORMAT``, ``E_USCC_CHECK``, ``E_ORG_CODE_CHECK``.

    The organization-code body (characters 9–17) carries its own GB 11714 check.
    Every real USCC at hand passes it (the issuer codes of STANDARDS.md's
    license-identifier vectors, ``91370000163044841F`` and the ``MB…`` code
    ``11370800MB28559184``), so it is enforced by default; ``check_org_code=False``
    exists for a source whose legacy codes are known to violate it.
    """
    if not isinstance(s, str):
        raise _err(
            "E_USCC_FORMAT", field, "USCC must be a string", "统一社会信用代码必须为字符串", s
        )
    v = normalize(s)
    if not _USCC_RE.fullmatch(v):
        raise _err(
            "E_USCC_FORMAT",
            field,
            "USCC must be 18 characters of 0-9 and A-Y without I, O, S, V, Z",
            "统一社会信用代码应为18位，由数字和除I、O、S、V、Z外的大写字母组成",
            s,
        )
    if uscc_check_char(v[:17]) != v[17]:
        raise _err(
            "E_USCC_CHECK",
            field,
            f"USCC check character is wrong (expected {uscc_check_char(v[:17])})",
            "统一社会信用代码校验码错误",
            s,
        )
    if check_org_code and not is_valid_org_code(v[8:17]):
        raise _err(
            "E_ORG_CODE_CHECK",
            field,
            "the organization code inside the USCC (characters 9-17) fails its GB 11714 check",
            "统一社会信用代码中的组织机构代码（第9至17位）校验码错误",
            s,
        )
    return v


# --- Organization code (GB 11714-1997) ---------------------------------------

_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
_ORG_RE = re.compile(r"[0-9A-Z]{8}[0-9X]")


_ORG_BODY_RE = re.compile(r"[0-9A-Z]{8}")
_ALNUM36 = {c: i for i, c in enumerate("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")}


def _alnum_value(c: str) -> int:
    return _ALNUM36[c]


def org_code_check_char(first8: str) -> str:
    """The 9th character of an organization code whose body is ``first8``."""
    if not _ORG_BODY_RE.fullmatch(first8):
        raise ValueError("first8 must be 8 characters of 0-9A-Z")
    total = sum(map(operator.mul, map(_ALNUM36.__getitem__, first8), _ORG_WEIGHTS))
    c = 11 - total % 11
    return "X" if c == 10 else "0" if c == 11 else str(c)


def is_valid_org_code(s: str) -> bool:
    """True if ``s`` (9 characters, an optional ``-`` before the check) verifies."""
    if not isinstance(s, str):
        return False
    v = normalize(s).replace("-", "")
    return bool(_ORG_RE.fullmatch(v)) and org_code_check_char(v[:8]) == v[8]


# --- Citizen ID number (GB 11643-1999) ---------------------------------------

_CID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CID_CHECK = "10X98765432"
_CID_RE = re.compile(r"[1-9][0-9]{16}[0-9X]")
# A birth year before this is a data-entry error rather than a living holder.
_CID_MIN_YEAR = 1880


def citizen_id_check_char(first17: str) -> str:
    """The 18th character of a citizen ID number (ISO 7064 MOD 11-2)."""
    if not re.fullmatch(r"[0-9]{17}", first17):
        raise ValueError("first17 must be 17 digits")
    return _CID_CHECK[sum(int(c) * w for c, w in zip(first17, _CID_WEIGHTS, strict=True)) % 11]


def is_valid_citizen_id(s: str, *, as_of: date | None = None) -> bool:
    """True if ``s`` is a well-formed citizen ID with a real birth date and check."""
    try:
        check_citizen_id(s, as_of=as_of)
    except IdentifierError:
        return False
    return True


def check_citizen_id(s: str, field: str = "citizen_id", *, as_of: date | None = None) -> str:
    """Return the normalized 18-character citizen ID number or raise IdentifierError.

    Reason codes: ``E_CITIZEN_ID_FORMAT``, ``E_CITIZEN_ID_DATE``, ``E_CITIZEN_ID_CHECK``.
    The birth date must exist and, when ``as_of`` is given (the data interval's
    date, never the clock), not lie after it. The region is deliberately not
    looked up in a table: numbers issued under since-abolished division codes
    stay valid for life.
    """
    if not isinstance(s, str):
        raise _err(
            "E_CITIZEN_ID_FORMAT", field, "ID number must be a string", "身份证号码必须为字符串", s
        )
    v = normalize(s)
    if not _CID_RE.fullmatch(v):
        raise _err(
            "E_CITIZEN_ID_FORMAT",
            field,
            "citizen ID number must be 17 digits followed by a digit or X",
            "居民身份证号码应为18位：17位数字加1位数字或X",
            s,
        )
    y, m, d = int(v[6:10]), int(v[10:12]), int(v[12:14])
    ok = y >= _CID_MIN_YEAR and 1 <= m <= 12 and 1 <= d <= calendar.monthrange(y, m)[1]
    if not ok or (as_of is not None and date(y, m, d) > as_of):
        raise _err(
            "E_CITIZEN_ID_DATE",
            field,
            "the birth date in the citizen ID number (characters 7-14) is not a real past date",
            "居民身份证号码中的出生日期（第7至14位）无效",
            s,
        )
    if citizen_id_check_char(v[:17]) != v[17]:
        raise _err(
            "E_CITIZEN_ID_CHECK",
            field,
            "citizen ID number check character is wrong",
            "居民身份证号码校验码错误",
            s,
        )
    return v


# --- License identifier (GB/T 36904-2018) ------------------------------------

LICENSE_ID_ROOT = "1.2.156.3005.2"
_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_ALNUM_VALUE = {c: i for i, c in enumerate(_ALNUM)}
# Type codes seen in practice are 21 characters: the defining authority's USCC
# plus a 3-digit sequence. Serials of 7-32 characters have been seen; 1-32 is
# accepted. These widths are observations, not confirmed normative text.
_TYPE_RE = r"[0-9A-Z]{21}"
_ISSUER_RE = r"[0-9A-Z]{18}"
_SERIAL_RE = r"[0-9A-Z]{1,32}"
_VERSION_RE = r"[0-9]{3}"
_LICENSE_ID_RE = re.compile(
    re.escape(LICENSE_ID_ROOT)
    + rf"\.({_TYPE_RE})\.({_ISSUER_RE})\.({_SERIAL_RE})\.({_VERSION_RE})\.([0-9A-Z])"
)


@dataclass(frozen=True, slots=True)
class LicenseIdentifier:
    """The parts of a GB/T 36904 license identifier (证照标识)."""

    type_code: str
    """证照类型代码, 21 characters."""
    issuer_code: str
    """颁发机构代码, the issuer's 18-character USCC."""
    serial: str
    """顺序号, upper-case alphanumerics."""
    version: str
    """版本号, 3 digits."""
    check: str
    """校验位, ISO/IEC 7064 MOD 37,36 over type+issuer+serial+version."""

    def __str__(self) -> str:
        return ".".join(
            (
                LICENSE_ID_ROOT,
                self.type_code,
                self.issuer_code,
                self.serial,
                self.version,
                self.check,
            )
        )


def mod37_36_check_char(s: str) -> str:
    """ISO/IEC 7064 MOD 37,36 (hybrid) check character over ``s`` (0-9A-Z).

    P starts at 36; for each character S = (P + v) mod 36 (0 becomes 36) and
    P = 2·S mod 37; the check is the value c with (P + c) mod 36 = 1. This
    detects every single-character substitution; an adjacent transposition of
    two characters whose values differ by 1 (mod 36) escapes it when the
    running P takes one particular value (72 of 45,360 state/pair combinations).
    """
    return _ALNUM[(1 - _mod37_36_state(36, s)) % 36]


#: P' for each (P, character): the MOD 37,36 recurrence as a table lookup.
_STEP = {
    (p, ch): (2 * ((p + v) % 36 or 36)) % 37 for p in range(37) for ch, v in _ALNUM_VALUE.items()
}


def _mod37_36_state(p: int, s: str) -> int:
    step = _STEP
    try:
        for ch in s:
            p = step[p, ch]
    except KeyError:
        raise ValueError(f"a character of {s!r} is not in 0-9A-Z") from None
    return p


@functools.lru_cache(maxsize=4096)
def _prefix_state(type_code: str, issuer_code: str) -> int:
    """State after type + issuer code: shared by every license of one issuer and type."""
    return _mod37_36_state(36, type_code + issuer_code)


def assemble_license_identifier(
    type_code: str, issuer_code: str, serial: str, version: str = "001"
) -> str:
    """:func:`make_license_identifier` for parts already known to be well formed
    (a type code from the code list, a verified USCC, a serial from
    :func:`serial_from_key`): the hot path of normalization skips re-checking them."""
    p = _mod37_36_state(_prefix_state(type_code, issuer_code), serial + version)
    return f"{LICENSE_ID_ROOT}.{type_code}.{issuer_code}.{serial}.{version}.{_ALNUM[(1 - p) % 36]}"


@functools.lru_cache(maxsize=16)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def make_license_identifier(
    type_code: str, issuer_code: str, serial: str, version: str = "001"
) -> str:
    """Assemble a GB/T 36904 identifier with its check character.

    Raises IdentifierError(``E_LICENSE_ID_FORMAT``) if a part is malformed.
    """
    parts = {
        "type_code": (type_code, _TYPE_RE),
        "issuer_code": (issuer_code, _ISSUER_RE),
        "serial": (serial, _SERIAL_RE),
        "version": (version, _VERSION_RE),
    }
    for name, (value, pattern) in parts.items():
        if not isinstance(value, str) or not _compiled(pattern).fullmatch(value):
            raise _err(
                "E_LICENSE_ID_FORMAT",
                name,
                f"license identifier part {name} must match {pattern}",
                f"证照标识组成部分 {name} 格式错误",
                value,
            )
    p = _mod37_36_state(_prefix_state(type_code, issuer_code), serial + version)
    return f"{LICENSE_ID_ROOT}.{type_code}.{issuer_code}.{serial}.{version}.{_ALNUM[(1 - p) % 36]}"


def parse_license_identifier(s: str, field: str = "ZZBS") -> LicenseIdentifier:
    """Split and verify a license identifier.

    Raises IdentifierError with ``E_LICENSE_ID_FORMAT`` or ``E_LICENSE_ID_CHECK``.
    """
    v = normalize(s) if isinstance(s, str) else ""
    m = _LICENSE_ID_RE.fullmatch(v)
    if m is None:
        raise _err(
            "E_LICENSE_ID_FORMAT",
            field,
            f"license identifier must be {LICENSE_ID_ROOT}.<type 21>.<issuer 18>"
            ".<serial 1-32>.<version 3>.<check 1>",
            "证照标识格式错误，应为 1.2.156.3005.2.类型代码.颁发机构代码.顺序号.版本号.校验位",
            s,
        )
    ident = LicenseIdentifier(*m.groups())
    expected = mod37_36_check_char(
        ident.type_code + ident.issuer_code + ident.serial + ident.version
    )
    if expected != ident.check:
        raise _err(
            "E_LICENSE_ID_CHECK",
            field,
            f"license identifier check character is wrong (expected {expected})",
            "证照标识校验位错误",
            s,
        )
    return ident


def is_valid_license_identifier(s: str) -> bool:
    """True if ``s`` parses and its MOD 37,36 check character verifies."""
    try:
        parse_license_identifier(s)
    except IdentifierError:
        return False
    return True


def serial_from_key(key: str, length: int = 20) -> str:
    """A deterministic serial (A-Z, 2-7) for a source record that has no identifier.

    Same key, same serial: re-ingesting a record yields the same identifier.
    The serial is a prefix of the base32 of SHA-256 over a domain-separated key,
    so 20 characters carry 100 bits.
    """
    if not 1 <= length <= 32:
        raise ValueError("length must be between 1 and 32")
    digest = hashlib.sha256(b"ehub-license-serial\x00" + key.encode("utf-8")).digest()
    # The base32 (RFC 4648) of the digest's first bits, ten bits (two letters)
    # per table lookup: base64.b32encode is pure Python in 3.11 and this runs
    # once per normalized record. Tests hold it equal to b32encode's prefix.
    pairs = (length + 1) // 2
    n = int.from_bytes(digest[: (pairs * 10 + 7) // 8], "big") >> ((-pairs * 10) % 8)
    pair = _B32_PAIRS
    out = "".join([pair[(n >> (10 * i)) & 1023] for i in range(pairs - 1, -1, -1)])
    return out[:length]


_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_B32_PAIRS = tuple(a + b for a in _B32 for b in _B32)


def _err(code: str, field: str, en: str, zh: str, value: object) -> IdentifierError:
    return IdentifierError(code, field, en, zh, value=value)
