"""Which generated records carry which defect, and which clean record a repeat copies.

A plan is computed up front from ``(count, defect_rate, seed)`` and is small
(one entry per defective record), so generators can stream the records
themselves. Positions are 1-based read order: the row ID of an SQL table, the
record's place across the delivered files.

Duplicates and conflicting versions (``E_DUPLICATE``, ``E_VERSION_CONFLICT``)
repeat an *original*: a clean record at an earlier position, used by no other
repeat, which the generator regenerates from its position when it writes the
repeat. When no such original exists (the first positions, or very high defect
rates with few clean records), the repeat's kind is swapped with a later
single-record defect, and only when none is left does it become another kind;
the plan's counts are what the generator reports.

Pure: no I/O; never imports the hub.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from simulators.checks import FIELD_LIMIT, USCC_CHARSET, has_mojibake

RELATIONAL_KINDS = frozenset({"E_DUPLICATE", "E_VERSION_CONFLICT"})
"""Defects that repeat an earlier clean record."""
IMPOSSIBLE_MONTH_DAYS = ((2, 30), (2, 31), (4, 31), (6, 31), (9, 31), (11, 31), (13, 5), (6, 0))
_RANDOM_TRIES = 64
_SCAN_LIMIT = 4096


@dataclass(frozen=True)
class DefectPlan:
    """Position → defect kind, and repeat position → its original's position."""

    kinds: Mapping[int, str]
    originals: Mapping[int, int]

    def counts(self, kinds: Sequence[str]) -> dict[str, int]:
        """Reason code → number of positions with it; every kind listed, zeros too."""
        out = dict.fromkeys(kinds, 0)
        for kind in self.kinds.values():
            out[kind] = out.get(kind, 0) + 1
        return out


def plan_defects(count: int, defect_rate: float, seed: int, kinds: Sequence[str]) -> DefectPlan:
    """round(count × rate) positions with defects, kinds balanced round-robin."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if not 0.0 <= defect_rate <= 1.0:
        raise ValueError(f"defect_rate must be within 0..1, got {defect_rate}")
    if not kinds:
        raise ValueError("kinds must not be empty")
    rng = random.Random(seed)
    picked = rng.sample(range(1, count + 1), round(count * defect_rate))
    offset = rng.randrange(len(kinds))
    planned = {p: kinds[(i + offset) % len(kinds)] for i, p in enumerate(picked)}
    simple = [k for k in kinds if k not in RELATIONAL_KINDS]
    originals: dict[int, int] = {}
    if any(k in RELATIONAL_KINDS for k in kinds):
        _place_repeats(planned, originals, simple, rng)
    return DefectPlan(kinds=dict(sorted(planned.items())), originals=originals)


def _place_repeats(
    planned: dict[int, str], originals: dict[int, int], simple: list[str], rng: random.Random
) -> None:
    order = sorted(planned)
    used: set[int] = set()
    no_clean = len(planned) == (order[-1] if order else 0)  # every position so far defective
    for idx, pos in enumerate(order):
        kind = planned[pos]
        if kind not in RELATIONAL_KINDS:
            continue
        original = None if no_clean else _find_original(pos, planned, used, rng)
        if original is not None:
            originals[pos] = original
            used.add(original)
            continue
        later = next(
            (
                order[j]
                for j in range(idx + 1, len(order))
                if planned[order[j]] not in RELATIONAL_KINDS
            ),
            None,
        )
        if later is not None and not no_clean:
            planned[pos], planned[later] = planned[later], kind
        elif simple:
            planned[pos] = simple[pos % len(simple)]
        else:
            raise ValueError("duplicates and conflicts need clean originals: lower the rate")


def _find_original(
    pos: int, planned: Mapping[int, str], used: set[int], rng: random.Random
) -> int | None:
    if pos <= 1:
        return None
    for _ in range(_RANDOM_TRIES):
        candidate = rng.randrange(1, pos)
        if candidate not in planned and candidate not in used:
            return candidate
    for candidate in range(pos - 1, max(0, pos - 1 - _SCAN_LIMIT), -1):
        if candidate not in planned and candidate not in used:
            return candidate
    return None


def base31(n: int, width: int = 6) -> str:
    """``n`` (mod 31**width) written with ``width`` characters of the USCC charset."""
    out = []
    for _ in range(width):
        n, r = divmod(n, 31)
        out.append(USCC_CHARSET[r])
    return "".join(reversed(out))


def impossible_month_day(rng: random.Random) -> tuple[int, int]:
    """A (month, day) no calendar has: 02-30, 02-31, 04-31, …, month 13, day 00."""
    return rng.choice(IMPOSSIBLE_MONTH_DAYS)


def oversize(base: str, rng: random.Random, fillers: Sequence[str]) -> str:
    """``base`` grown to 201..400 characters with a parenthesised list of ``fillers``."""
    target = rng.randint(FIELD_LIMIT + 1, 2 * FIELD_LIMIT)
    text = base + "（"
    while len(text) < target - 1:
        text += rng.choice(fillers) + "、"
    return text[: target - 1] + "）"


def mojibake(text: str, rng: random.Random) -> str:
    """Chinese text garbled as in UTF-8 databases: GBK read as UTF-8, or UTF-8 as Latin-1.

    GBK bytes read as UTF-8 sometimes form valid UTF-8 (姚 ``D2 A6`` → "Ҧ")
    with no U+FFFD the hub could see; those fall back to the Latin-1 form,
    whose first character triple always matches the hub's pattern.
    """
    if rng.random() < 0.5:
        garbled = text.encode("gbk").decode("utf-8", "replace")
        if has_mojibake(garbled.strip()):
            return garbled
    return text.encode("utf-8").decode("latin-1")


def gbk_mojibake(text: str) -> str:
    """Chinese text mangled the classic GBK way, into "锟斤拷" runs; ASCII survives.

    The text's GBK bytes were decoded as UTF-8 with every byte replaced by
    U+FFFD, stored as UTF-8 (``EF BF BD`` per byte) and read back as GBK: each
    pair of U+FFFD becomes "锟斤拷". Unlike U+FFFD or Latin-1 mojibake, the
    result is encodable in GBK, so it survives in a GBK file.
    """
    return "".join(ch if ch.isascii() else "锟斤拷" for ch in text)


__all__ = [
    "IMPOSSIBLE_MONTH_DAYS",
    "RELATIONAL_KINDS",
    "DefectPlan",
    "base31",
    "gbk_mojibake",
    "impossible_month_day",
    "mojibake",
    "oversize",
    "plan_defects",
]
