"""The rules an office's registration follows (:class:`ehub.offices.Office` checks
itself with them): its code, division and level, and the record kinds, license
types, field scopes, masking and delivery modes it may be given. A failed check
raises :class:`OfficeError` naming the setting at fault. Reads no store.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from functools import cache
from types import MappingProxyType
from typing import Literal, cast, get_args

from ehub import divisions
from ehub.errors import ConfigError, IdentifierError
from schemas import path as schema_path

RecordKind = Literal["license", "case"]
OfficeLevel = Literal["city", "county", "township"]
DeliveryMode = Literal["kafka", "pull", "file"]
MaskMethod = Literal["name", "id_number", "phone", "address", "none"]

RECORD_KINDS: tuple[RecordKind, ...] = get_args(RecordKind)
LEVELS: tuple[OfficeLevel, ...] = get_args(OfficeLevel)
DELIVERY_MODES: tuple[DeliveryMode, ...] = get_args(DeliveryMode)
MASK_METHODS: tuple[MaskMethod, ...] = get_args(MaskMethod)

#: A field scope entry meaning "every field of the kind".
ALL_FIELDS = "*"
#: A license field scope entry meaning "every surface field" (the ``KZ`` object).
SURFACE_FIELDS = "KZ"

#: Office codes end up in topic names, file names and URLs: keep them plain.
CODE_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{1,63}")
SURFACE_RE = re.compile(r"KZ_[A-Z0-9_]{1,40}")
# GB/T 36904 type code: the defining authority's USCC (18) + a 3-digit sequence.
TYPE_RE = re.compile(r"[0-9A-HJ-NPQRTUWXY]{18}[0-9]{3}")
# Division table level → office level.
_LEVEL_OF = {"prefecture": "city", "county": "county", "township": "township"}


class OfficeError(ConfigError):
    """An office cannot be registered or changed as asked. ``field`` names the
    setting at fault (``division``, ``fields.license``, ``masking.CZZT``, ...)."""

    def __init__(self, message: str, *, field: str = "", office: str = "") -> None:
        self.field = field
        self.office = office
        where = f"office {office}: " if office else ""
        super().__init__(f"{where}{field + ': ' if field else ''}{message}")


class OfficeNotFound(OfficeError):
    """No office (or credential) with the code given."""


@cache
def record_fields(kind: RecordKind) -> frozenset[str]:
    """The top-level field codes of a record kind, from its JSON Schema in ``schemas/``."""
    doc = json.loads(schema_path(f"{kind}.schema.json").read_text(encoding="utf-8"))
    return frozenset(doc["properties"])


def check_division(code: str, office: str) -> str:
    try:
        return divisions.check_division(code, "division")
    except IdentifierError as exc:
        raise OfficeError(
            exc.message_en + f" (got {code!r})", field="division", office=office
        ) from exc


def expected_level(code: str, office: str) -> OfficeLevel:
    if len(code) == 9:
        return "township"
    d = divisions.lookup(code)
    level = _LEVEL_OF.get(d.level if d else "")
    if level is None:
        raise OfficeError(
            f"{code} is a {d.level if d else 'unknown'} division; offices are at city "
            "(e.g. 370600), county or township (9 digits) level",
            field="division",
            office=office,
        )
    return cast(OfficeLevel, level)


def check_closed(
    values: Iterable[str], allowed: tuple[str, ...], what: str, office: str
) -> set[str]:
    if isinstance(values, str):
        values = [values]
    out = set(values)
    bad = sorted(out - set(allowed))
    if bad:
        raise OfficeError(
            f"unknown value(s) {', '.join(bad)}; use {' | '.join(allowed)}",
            field=what,
            office=office,
        )
    return out


def field_ok(kind: str, code: str) -> bool:
    if code in (ALL_FIELDS, *record_fields(cast(RecordKind, kind))):
        return True
    return kind == "license" and bool(SURFACE_RE.fullmatch(code))


def check_fields(
    kinds: frozenset[RecordKind], scopes: Mapping[RecordKind, Iterable[str]], office: str
) -> Mapping[RecordKind, frozenset[str]]:
    extra = sorted(set(scopes) - set(kinds))
    if extra:
        raise OfficeError(
            f"field scope given for kind(s) not granted: {', '.join(extra)}",
            field="fields",
            office=office,
        )
    out: dict[RecordKind, frozenset[str]] = {}
    for kind in sorted(kinds):
        given = scopes.get(kind)
        codes = frozenset([given] if isinstance(given, str) else (given or ()))
        if not codes:
            raise OfficeError(
                f"give the fields the office may see ({kind}=F1,F2,... or {kind}=*)",
                field=f"fields.{kind}",
                office=office,
            )
        bad = sorted(c for c in codes if not field_ok(kind, c))
        if bad:
            raise OfficeError(
                f"unknown {kind} field code(s) {', '.join(bad)}",
                field=f"fields.{kind}",
                office=office,
            )
        out[kind] = codes
    return MappingProxyType(out)


def check_masking(
    kinds: frozenset[RecordKind], masking: Mapping[str, str], office: str
) -> Mapping[str, MaskMethod]:
    out: dict[str, MaskMethod] = {}
    for code, method in masking.items():
        if not any(field_ok(k, code) for k in kinds) or code == ALL_FIELDS:
            raise OfficeError(
                f"{code!r} is not a field of the kinds granted ({', '.join(sorted(kinds))})",
                field=f"masking.{code}",
                office=office,
            )
        if method not in MASK_METHODS:
            raise OfficeError(
                f"unknown masking {method!r}; use {' | '.join(MASK_METHODS)}",
                field=f"masking.{code}",
                office=office,
            )
        out[code] = cast(MaskMethod, method)
    return MappingProxyType(out)
