"""GB/T 2260 administrative division codes of Shandong (37).

The table is ``schemas/codelists/divisions_37.json``, generated at development
time by ``tools/make_divisions.py`` from a maintained PyPI package (the JSON
names the package and version): the province, its 16 prefecture-level cities
and every county-level division. Township codes (9 digits, GB/T 10114) are not
in any maintained package found, so :func:`check_division` accepts a township
code structurally when its county is known, and :func:`lookup` /
:func:`is_known` answer only for codes in the table.

Codes outside Shandong are unknown here. Loading is lazy and cached; nothing
here touches the network or the clock.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Literal, cast

from ehub import codelists
from ehub.errors import ConfigError, IdentifierError

__all__ = [
    "Division",
    "Level",
    "ancestors",
    "check_division",
    "counties",
    "county_of",
    "is_known",
    "lookup",
]

Level = Literal["province", "prefecture", "county", "township"]

_TABLE = "divisions_37"
_CODE_RE = re.compile(r"[0-9]{6}(?:[0-9]{3})?")
# GB/T 10114 township segment: 001-099 街道, 100-199 镇, 200-399 乡, 400-599 other
# township-level units (farms, development zones); 000 is not a township.
_TOWNSHIP_RE = re.compile(r"(?!000)[0-5][0-9]{2}")


@dataclass(frozen=True, slots=True)
class Division:
    """One administrative division."""

    code: str
    """6 digits (province ``370000``, prefecture ``370100``, county) or 9 (township)."""
    name: str
    """Chinese name, e.g. 济南市."""
    level: Level
    parent: str | None
    """Code of the enclosing division; None for the province."""


@functools.cache
def _table() -> dict[str, Division]:
    out: dict[str, Division] = {}
    for e in codelists.load(_TABLE):
        level = e.extra.get("level")
        if level not in ("province", "prefecture", "county", "township"):
            raise ConfigError(f"{_TABLE}: code {e.code} has bad level {level!r}")
        parent = e.extra.get("parent")
        out[e.code] = Division(e.code, e.zh, cast(Level, level), parent)
    return out


def lookup(code: str) -> Division | None:
    """The division with this exact code, or None."""
    return _table().get(code) if isinstance(code, str) else None


def is_known(code: str) -> bool:
    """True if the code is in the table."""
    return lookup(code) is not None


def _format_error(code: object, field: str) -> IdentifierError:
    return IdentifierError(
        "E_DIVISION_FORMAT",
        field,
        "division code must be 6 digits (GB/T 2260) or 9 digits (GB/T 10114 township)",
        "行政区划代码应为6位（GB/T 2260）或9位（乡级，GB/T 10114）数字",
        value=code,
    )


def check_division(code: str, field: str = "division") -> str:
    """Return ``code`` (blanks stripped) if it is a known division, else raise.

    Reason codes: ``E_DIVISION_FORMAT`` (not 6/9 digits, or a 9-digit code whose
    township segment is outside GB/T 10114's ranges) and ``E_DIVISION_UNKNOWN``
    (a 6-digit code not in the table, or a 9-digit code whose county is not).
    """
    v = code.strip() if isinstance(code, str) else ""
    if not _CODE_RE.fullmatch(v) or (len(v) == 9 and not _TOWNSHIP_RE.fullmatch(v[6:])):
        raise _format_error(code, field)
    county = v[:6]
    known = is_known(v) or (
        len(v) == 9 and (d := lookup(county)) is not None and d.level == "county"
    )
    if not known:
        raise IdentifierError(
            "E_DIVISION_UNKNOWN",
            field,
            f"division code {v} is not in the GB/T 2260 table of Shandong",
            f"行政区划代码 {v} 不在山东省 GB/T 2260 代码表中",
            value=code,
        )
    return v


def county_of(code: str) -> str:
    """The 6-digit county code of a 6- or 9-digit code (a pure prefix).

    Raises IdentifierError(``E_DIVISION_FORMAT``) if the code is malformed.
    """
    if not isinstance(code, str) or not _CODE_RE.fullmatch(code):
        raise _format_error(code, "division")
    return code[:6]


def ancestors(code: str) -> list[str]:
    """Codes of the enclosing divisions, nearest first, ending with the province.

    ``ancestors("370102")`` → ``["370100", "370000"]``; a township's list
    starts with its county. Derived from the code's structure, so it works for
    codes missing from the table; raises IdentifierError on a malformed code.
    """
    if not isinstance(code, str) or not _CODE_RE.fullmatch(code):
        raise _format_error(code, "division")
    candidates = []
    if len(code) == 9:
        candidates.append(code[:6])
    candidates += [code[:4] + "00", code[:2] + "0000"]
    # Drop the code itself (a prefecture's own "xx00" form) and duplicates.
    out: list[str] = []
    for c in candidates:
        if c != code and c not in out:
            out.append(c)
    return out


def counties(prefix: str = "37") -> list[Division]:
    """County-level divisions whose code starts with ``prefix``, by code."""
    return sorted(
        (d for d in _table().values() if d.level == "county" and d.code.startswith(prefix)),
        key=lambda d: d.code,
    )


def prefectures(prefix: str = "37") -> list[Division]:
    """Prefecture-level divisions (cities) whose code starts with ``prefix``, by code."""
    return sorted(
        (d for d in _table().values() if d.level == "prefecture" and d.code.startswith(prefix)),
        key=lambda d: d.code,
    )
