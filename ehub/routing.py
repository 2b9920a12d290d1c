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


def division_of(kind: RecordKind, document: Mapping[str, Any]) -> str:
    """The division code (6 or 9 digits) a record is routed by; RoutingError if none."""
    rule = _rule(kind)
    ident = str(document.get(IDENTIFIER_FIELD[kind]) or "(no identifier)")
    for field in rule:
        raw = document.get(field)
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            continue  # absent: the next field of the rule
        try:
            return divisions.check_division(raw, field)
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


def _mask(method: MaskMethod, value: Any) -> Any:
    if method == "none" or value is None:
        return value
    return _MASKERS[method](str(value))


def view_for(office: Office, kind: RecordKind, document: Mapping[str, Any]) -> dict[str, Any]:
    """The record as ``office`` may see it: scoped fields only, masked per its policy.

    Raises ConfigError if the office is not authorized for ``kind`` (routing
    should not have sent it). The input is not modified.
    """
    _rule(kind)
    if kind not in office.kinds:
        raise ConfigError(f"office {office.code} is not authorized for {kind} records")
    scope = office.fields.get(kind, frozenset())
    everything = ALL_FIELDS in scope
    person = _is_person(kind, document)
    defaults = DEFAULT_MASKING[kind]
    subject = _SUBJECT_FIELDS[kind]

    def method(code: str) -> MaskMethod:
        if code in office.masking:
            return office.masking[code]
        if code in subject and not person:
            return "none"
        return defaults.get(code, "none")

    out: dict[str, Any] = {}
    for code, value in document.items():
        if kind == "license" and code == SURFACE_FIELDS:
            whole = everything or SURFACE_FIELDS in scope
            surface = dict(value or {})
            kept = {k: _mask(method(k), v) for k, v in surface.items() if whole or k in scope}
            if whole or any(c.startswith("KZ_") for c in scope):
                out[code] = kept
        elif code == "lineage" and (everything or code in scope) and isinstance(value, Mapping):
            out[code] = {k: v for k, v in value.items() if k not in _LINEAGE_HIDDEN}
        elif everything or code in scope:
            out[code] = _mask(method(code), value)
    return out
