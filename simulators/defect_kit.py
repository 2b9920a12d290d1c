"""Shared pieces of the department generators: defect makers and the generator report.

Used by the housing (REST) and transport (Kafka events) simulators. Every maker
returns a value carrying exactly the one defect its name says, and nothing
else the hub could flag (notes/common.md, "Hub quarantine rules"). Pure
functions of their arguments and the ``random.Random`` handed in; never
imports the hub.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from types import MappingProxyType
from typing import Any

from simulators.checks import USCC_CHARSET, make_uscc

_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
IMPOSSIBLE_MONTH_DAYS = ((2, 30), (2, 31), (4, 31), (6, 31), (9, 31), (11, 31), (13, 5), (6, 0))
"""(month, day) pairs no calendar has: 2023-02-30, month 13, day 00, …"""
UNKNOWN_DIVISIONS = ("379999", "370199", "379901", "370299", "379950")
"""Well-formed 6-digit codes absent from GB/T 2260 (the tests check them against the table)."""


@dataclass(frozen=True)
class GeneratorReport:
    """What a generator produced and what the hub must quarantine from it."""

    count: int
    """Records produced (housing: permit items; transport: events)."""
    expected: Mapping[str, int] = field(default_factory=dict)
    """Reason code → exact number of records the hub must quarantine with it (zeros listed)."""
    defective_keys: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    """Reason code → source record keys carrying it, in read order (housing ``id``, event ``eventId``)."""

    @property
    def defective(self) -> int:
        return sum(self.expected.values())

    def reason_of(self) -> dict[Any, str]:
        """Record key → its one reason code."""
        return {key: code for code, keys in self.defective_keys.items() for key in keys}

    def to_dict(self, *, include_keys: bool = False) -> dict[str, Any]:
        """JSON-ready form; the keys only on request (they can be many)."""
        out: dict[str, Any] = {
            "count": self.count,
            "expected": dict(self.expected),
            "defective": self.defective,
        }
        if include_keys:
            out["defective_keys"] = {k: list(v) for k, v in self.defective_keys.items()}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GeneratorReport:
        return make_report(
            int(data["count"]),
            tuple(data["expected"]),
            (
                (code, key)
                for code, keys in (data.get("defective_keys") or {}).items()
                for key in keys
            ),
        )


def make_report(
    count: int, kinds: tuple[str, ...], keyed: Iterable[tuple[str, Any]]
) -> GeneratorReport:
    """Build a report from (reason, key) pairs in read order; every kind listed, zeros too."""
    keys: dict[str, list[Any]] = {k: [] for k in kinds}
    for code, key in keyed:
        keys.setdefault(code, []).append(key)
    return GeneratorReport(
        count=count,
        expected=MappingProxyType({k: len(v) for k, v in keys.items()}),
        defective_keys=MappingProxyType({k: tuple(v) for k, v in keys.items()}),
    )


def plan_defects(
    count: int, defect_rate: float, seed: int, kinds: tuple[str, ...]
) -> dict[int, str]:
    """Index (1..count) → defect kind: round(count × rate) indices, kinds round-robin."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if not 0.0 <= defect_rate <= 1.0:
        raise ValueError(f"defect_rate must be within 0..1, got {defect_rate}")
    rng = random.Random(f"plan:{seed}")
    picked = sorted(rng.sample(range(1, count + 1), round(count * defect_rate)))
    offset = rng.randrange(len(kinds))
    return {n: kinds[(i + offset) % len(kinds)] for i, n in enumerate(picked)}


def base31(n: int, width: int = 6) -> str:
    """``n`` (mod 31**width) in the USCC charset, ``width`` characters."""
    n %= 31**width
    out = []
    for _ in range(width):
        n, r = divmod(n, 31)
        out.append(USCC_CHARSET[r])
    return "".join(reversed(out))


def agency_uscc(division: str, salt: int) -> str:
    """A valid class-11 (机关) USCC for a government bureau of ``division``."""
    return make_uscc("11", division, "MB" + base31(int(division) * 7919 + salt * 104_729))


def company_uscc(dept_class: str, division: str, n: int, seed: int) -> str:
    """A valid USCC; distinct ``n`` (below 31**6) give distinct codes for one seed."""
    # 7919 is prime and coprime to 31**6: a bijection of n.
    return make_uscc(dept_class, division, "MA" + base31(n * 7919 + seed * 104_729 + 31_415))


def wrong_uscc_check(code: str, rng: random.Random) -> str:
    """The same USCC with another check character of the GB 32100 charset."""
    return code[:17] + rng.choice(USCC_CHARSET.replace(code[17], ""))


def wrong_alnum_check(identifier: str, rng: random.Random) -> str:
    """A GB/T 36904 identifier with another check character (0-9A-Z)."""
    return identifier[:-1] + rng.choice(_ALNUM.replace(identifier[-1], ""))


def impossible_date(year: int, rng: random.Random, sep: str) -> str:
    """A date in ``year`` that does not exist, e.g. ``2023/02/30`` or ``20231305``."""
    month, day = rng.choice(IMPOSSIBLE_MONTH_DAYS)
    return f"{year:04d}{sep}{month:02d}{sep}{day:02d}"


def mojibake(text: str, rng: random.Random) -> str:
    """Chinese text garbled the two ways departments do it (UTF-8 read as Latin-1, GBK as UTF-8)."""
    if rng.random() < 0.5:
        return text.encode("utf-8").decode("latin-1")
    garbled = text.encode("gbk").decode("utf-8", "replace")
    # Some GBK byte pairs are valid UTF-8 (姚 → "Ҧ"): keep the garbling unmistakable.
    return garbled if "\ufffd" in garbled else text.encode("utf-8").decode("latin-1")


def blank(rng: random.Random) -> str | None:
    """A missing required value: null, empty or whitespace."""
    return rng.choice((None, "", " ", "\u3000"))


def add_years(d: date, years: int) -> date:
    try:
        return d.replace(year=d.year + years)
    except ValueError:  # 29 February
        return d.replace(year=d.year + years, day=28)


def day_range(start: date, end: date, rng: random.Random) -> date:
    """A uniformly drawn day in [start, end]."""
    return start + timedelta(days=rng.randrange((end - start).days + 1))


def long_name(base: str, rng: random.Random, members: Iterable[str]) -> str:
    """A consortium name of 201..400 characters (a clean, plausible but oversize holder name)."""
    target = rng.randint(201, 400)
    text = base + "（联合体成员："
    pool = list(members)
    while len(text) < target:
        text += rng.choice(pool) + "、"
    return text[: target - 1] + "）"
