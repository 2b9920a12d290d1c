"""Routing and per-office views of the return feeds (数据属地返还).

Three pure steps, no store, no clock, no network:

1. :func:`division_of` — the division a record belongs to, by one rule per kind
   (:data:`DIVISION_RULES`): a license goes by its holder's division (CZZTQHDM),
   falling back to its issuer's (ZZBFJGQHDM) when the holder's is absent; a case
   record by its XZQHDM. A missing or invalid division raises
   :class:`RoutingError` naming the record and the field: a record is never
   silently left unrouted.
2. :func:`offices_for` — the offices whose jurisdiction contains that division
   (:func:`in_jurisdiction`) and that are authorized for the kind and type.
3. :func:`view_for` — the payload one office may see: only the fields in its
   scope (others are absent, not masked), personal data masked irreversibly by
   its policy on top of :data:`DEFAULT_MASKING`.

Must not publish, store or log records (callers do, and log ids only).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

from ehub import divisions
from ehub.errors import ConfigError, IdentifierError, RecordError
from ehub.masking import mask_address, mask_id_number, mask_name, mask_phone
from ehub.offices import ALL_FIELDS, SURFACE_FIELDS, MaskMethod, Office, RecordKind

__all__ = [
    "DEFAULT_MASKING",
    "DIVISION_RULES",
    "RoutingError",
    "division_of",
    "in_jurisdiction",
    "offices_for",
    "view_for",
    "view_plan",
]

#: Per kind, the fields giving a record's division, in order of preference.
DIVISION_RULES: Mapping[RecordKind, tuple[str, ...]] = {
    "license": ("CZZTQHDM", "ZZBFJGQHDM"),
    "case": ("XZQHDM",),
}
#: Per kind, the field identifying a record in messages.
IDENTIFIER_FIELD: Mapping[RecordKind, str] = {"license": "ZZBS", "case": "BJBH"}

#: The hub's masking of every feed, which an office's own policy overrides
#: field by field (``none`` lifts a default). Names and numbers of people are
#: masked; surface fields naming a person (legal representative, person in
#: charge, operator) always hold a person.
DEFAULT_MASKING: Mapping[RecordKind, Mapping[str, MaskMethod]] = {
    "license": {
        "CZZT": "name",
        "CZZTDM": "id_number",
        "KZ_FDDBR": "name",
        "KZ_FZR": "name",
        "KZ_JYZ": "name",
    },
    "case": {"SQRMC": "name", "SQRZJHM": "id_number"},
}

#: Fields that name the record's subject: a person's name or ID number when the
#: subject is a person, public register data (a company's name and USCC) when it
#: is an organization. The *default* masking of these applies to people only; an
#: office's explicit policy applies to every subject.
_SUBJECT_FIELDS: Mapping[RecordKind, frozenset[str]] = {
    "license": frozenset({"CZZT", "CZZTDM"}),
    "case": frozenset({"SQRMC", "SQRZJHM"}),
}
# Holder code types of organizations (USCC, other organization codes); every
# other type (ID card, passport, permits, ...) identifies a person.
_ORGANIZATION_CODE_TYPES = frozenset({"001", "099"})
_LEGAL_ENTITY_APPLICANT = "1"  # SQRLX

_MASKERS: Mapping[str, Callable[[str], str]] = {
    "name": mask_name,
    "id_number": mask_id_number,
    "phone": mask_phone,
    "address": mask_address,
}
# The content hash of the unmasked record would let anyone confirm a guess of
# a masked name (hash the record with the guess): never part of a view.
_LINEAGE_HIDDEN = frozenset({"content_hash"})


class RoutingError(RecordError):
    """A record cannot be routed: its division is missing, malformed or unknown.

    ``record_key`` is the record's identifier (ZZBS / BJBH), ``field`` the
    division field at fault, ``reason_code`` one of E_REQUIRED_MISSING,
    E_DIVISION_FORMAT, E_DIVISION_UNKNOWN.
    """


def _rule(kind: str) -> tuple[str, ...]:
    rule = DIVISION_RULES.get(cast(RecordKind, kind))
    if rule is None:
        raise ConfigError(f"unknown record kind {kind!r}; use {' | '.join(DIVISION_RULES)}")
    return rule


@functools.lru_cache(maxsize=8192)
def _checked_division(code: str, field: str) -> str:
    """divisions.check_division, remembered (a few thousand codes; errors not kept)."""
    return divisions.check_division(code, field)


def division_of(kind: RecordKind, document: Mapping[str, Any]) -> str:
    """The division code (6 or 9 digits) a record is routed by; RoutingError if none."""
    rule = _rule(kind)
    ident = str(document.get(IDENTIFIER_FIELD[kind]) or "(no identifier)")
    for field in rule:
        raw = document.get(field)
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            continue  # absent: the next field of the rule
        try:
            return (
                _checked_division(raw, field)
                if type(raw) is str
                else divisions.check_division(raw, field)
            )
        except IdentifierError as exc:
            # Present but wrong: never fall back, the department must fix it.
            raise RoutingError(
                exc.reason_code,
                field,
                f"{kind} {ident} cannot be routed: {exc.message_en} (got {raw!r})",
                f"{exc.message_zh}，{ident} 无法返还属地（{field}={raw!r}）",
                record_key=ident,
                value=raw,
            ) from exc
    raise RoutingError(
        "E_REQUIRED_MISSING",
        rule[0],
        f"{kind} {ident} cannot be routed: no division in {' or '.join(rule)}",
        f"{ident} 缺少行政区划代码（{'、'.join(rule)}），无法返还属地",
        record_key=ident,
    )


def in_jurisdiction(office: Office, division: str) -> bool:
    """True if a record of ``division`` belongs to the office's jurisdiction.

    The same code always; with ``include_children`` also every division whose
    code structure places it inside the office's (``divisions.ancestors``: a
    township's first 6 digits are its county, a county's first 4 its city).
    A township office never sees its county's own records, nor a county office
    its city's.
    """
    if division == office.division:
        return True
    return office.include_children and office.division in divisions.ancestors(division)


def offices_for(
    division: str,
    kind: RecordKind,
    type_code: str | None,
    offices: Iterable[Office],
) -> list[Office]:
    """The active offices that receive a record of this division, kind and license type.

    ``type_code`` is the license type (ZZLXDM); ignored for case records. The
    division is checked first: RoutingError if it is malformed or unknown.
    """
    _rule(kind)
    try:
        division = divisions.check_division(division, "division")
    except IdentifierError as exc:
        raise RoutingError(
            exc.reason_code, "division", exc.message_en, exc.message_zh, value=division
        ) from exc
    return [
        o
        for o in offices
        if o.active
        and kind in o.kinds
        and (kind != "license" or not o.license_types or type_code in o.license_types)
        and in_jurisdiction(o, division)
    ]


def _is_person(kind: RecordKind, document: Mapping[str, Any]) -> bool:
    # Unknown or missing subject type: treat as a person (mask rather than leak).
    if kind == "license":
        return document.get("CZZTDMLXDM") not in _ORGANIZATION_CODE_TYPES
    return document.get("SQRLX") != _LEGAL_ENTITY_APPLICANT


def view_for(office: Office, kind: RecordKind, document: Mapping[str, Any]) -> dict[str, Any]:
    """The record as ``office`` may see it: scoped fields only, masked per its policy.

    Raises ConfigError if the office is not authorized for ``kind`` (routing
    should not have sent it). The input is not modified. For many records of one
    office, :func:`view_plan` once and call it per record.
    """
    return view_plan(office, kind)(document)


def view_plan(office: Office, kind: RecordKind) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """:func:`view_for` of ``office`` and ``kind`` as a function of the document, the
    office's scope and masking decided once (ConfigError now, as view_for would)."""
    _rule(kind)
    if kind not in office.kinds:
        raise ConfigError(f"office {office.code} is not authorized for {kind} records")
    return _ViewPlan(office, kind).view


class _ViewPlan:
    """One office's view of one kind: the masking method of each field code, per
    kind of subject (a person or not), worked out on first sight of the code."""

    __slots__ = ("_defaults", "_everything", "_kind", "_masked", "_masking", "_methods",
                 "_scope", "_subject", "_surface_kept", "_surface_whole")  # fmt: skip

    def __init__(self, office: Office, kind: RecordKind) -> None:
        scope = office.fields.get(kind, frozenset())
        self._kind = kind
        self._scope = scope
        self._everything = ALL_FIELDS in scope
        self._masking = office.masking
        self._defaults = DEFAULT_MASKING[kind]
        self._subject = _SUBJECT_FIELDS[kind]
        self._surface_whole = self._everything or SURFACE_FIELDS in scope
        self._surface_kept = self._surface_whole or any(c.startswith("KZ_") for c in scope)
        self._methods: tuple[dict[str, MaskMethod], dict[str, MaskMethod]] = ({}, {})
        # Every code whose method is not "none" (any other code's is): the office's
        # policy and the defaults name them all. Per subject: an organization, a person.
        named = sorted(set(self._masking) | set(self._defaults))
        self._masked = tuple(
            {c: m for c in named if (m := self._method(c, person)) != "none"}
            for person in (False, True)
        )

    def _method(self, code: str, person: bool) -> MaskMethod:
        if code in self._masking:
            return self._masking[code]
        if code in self._subject and not person:
            return "none"
        return self._defaults.get(code, "none")

    def view(self, document: Mapping[str, Any]) -> dict[str, Any]:
        kind, scope, everything = self._kind, self._scope, self._everything
        person = _is_person(kind, document)
        if everything:
            return self._whole(document, person)
        methods = self._methods[person]
        out: dict[str, Any] = {}
        for code, value in document.items():
            if kind == "license" and code == SURFACE_FIELDS:
                whole = self._surface_whole
                kept = {}
                for k, v in dict(value or {}).items():
                    if whole or k in scope:
                        m = methods.get(k) or methods.setdefault(k, self._method(k, person))
                        kept[k] = v if m == "none" or v is None else _MASKERS[m](str(v))
                if self._surface_kept:
                    out[code] = kept
            elif code == "lineage" and (everything or code in scope) and isinstance(value, Mapping):
                out[code] = {k: v for k, v in value.items() if k not in _LINEAGE_HIDDEN}
            elif everything or code in scope:
                m = methods.get(code) or methods.setdefault(code, self._method(code, person))
                out[code] = value if m == "none" or value is None else _MASKERS[m](str(value))
        return out

    def _whole(self, document: Mapping[str, Any], person: bool) -> dict[str, Any]:
        """:meth:`view` of an office that sees every field: the document with the
        masked codes replaced, in the same order."""
        license_ = self._kind == "license"
        out = dict(document)
        for code, m in self._masked[person].items():
            value = out.get(code)
            if value is None or (license_ and code == SURFACE_FIELDS):
                continue
            if code == "lineage" and _is_mapping(value):
                continue
            out[code] = _MASKERS[m](str(value))
        if license_ and SURFACE_FIELDS in out:
            masked = self._masked[person]
            out[SURFACE_FIELDS] = {
                k: v if v is None or k not in masked else _MASKERS[masked[k]](str(v))
                for k, v in dict(out[SURFACE_FIELDS] or {}).items()
            }
        lineage = out.get("lineage")
        if lineage is not None and _is_mapping(lineage):
            out["lineage"] = {k: v for k, v in lineage.items() if k not in _LINEAGE_HIDDEN}
        return out


def _is_mapping(value: Any) -> bool:
    return type(value) is dict or isinstance(value, Mapping)  # an ABC check costs ~1 µs
