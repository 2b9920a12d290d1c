"""The office registry: grassroots offices that receive the records of their jurisdiction.

An office (county or township government office, or a city bureau) has a
division, a level, what it is authorized to receive (record kinds, license
types), which fields of each kind it may see and how they are masked, how it
receives (Kafka, pull API, file export) and bearer credentials. As with API
clients (:mod:`ehub.api_clients`), a credential is shown once at creation and
the hub keeps only its SHA-256; a revoked credential, or any credential of a
revoked office, is refused.

What an office may see is decided by :mod:`ehub.routing` from the
:class:`Office` record; this module only stores and validates it. It must not
read or route records.

Errors: :class:`OfficeError` (a :class:`~ehub.errors.ConfigError`, so
terminal) names the field at fault; :class:`OfficeNotFound` when no office (or
credential) has the code given. The registration rules are
:mod:`ehub.office_rules`.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import cast

from sqlalchemy import select
from sqlalchemy.orm import Session

from ehub.office_rules import (
    ALL_FIELDS,
    CODE_RE,
    DELIVERY_MODES,
    RECORD_KINDS,
    SURFACE_FIELDS,
    TYPE_RE,
    DeliveryMode,
    MaskMethod,
    OfficeError,
    OfficeLevel,
    OfficeNotFound,
    RecordKind,
    check_closed,
    check_division,
    check_fields,
    check_masking,
    expected_level,
    record_fields,
)
from ehub.store.db import Store, utcnow
from ehub.store.models import OfficeCredentialRow, OfficeRow

__all__ = [
    "ALL_FIELDS",
    "SURFACE_FIELDS",
    "TOKEN_PREFIX",
    "DeliveryMode",
    "MaskMethod",
    "Office",
    "OfficeError",
    "OfficeLevel",
    "OfficeNotFound",
    "RecordKind",
    "add_office",
    "authenticate",
    "get_office",
    "grant",
    "issue_credential",
    "list_offices",
    "record_fields",
    "revoke",
    "token_digest",
]

TOKEN_PREFIX = "ehof_"


@dataclass(frozen=True, slots=True)
class Office:
    """A registered office, validated on construction (from the CLI, the store or a test)."""

    code: str
    """Stable id, lower-case ``[a-z0-9_.-]``, e.g. ``370602-zfq``."""
    name: str
    """Chinese name, e.g. 芝罘区行政审批服务局."""
    division: str
    """GB/T 2260 prefecture (``370600``) or county code, or a 9-digit township code."""
    level: OfficeLevel
    """Derived from the division; a mismatch is refused."""
    kinds: frozenset[RecordKind]
    """Record kinds it receives."""
    fields: Mapping[RecordKind, AbstractSet[str]] = field(hash=False)
    """Per kind, the field codes it may see; others are absent from what it gets.
    ``*`` = every field, ``KZ`` = every surface field, ``KZ_xxx`` = one surface field."""
    license_types: frozenset[str] = frozenset()
    """License type codes (ZZLXDM) it receives; empty = every type."""
    include_children: bool = False
    """Also receive the records of sub-divisions (a city its counties and their
    townships, a county its townships)."""
    masking: Mapping[str, MaskMethod] = field(default_factory=dict, hash=False)
    """Per field code (top-level or ``KZ_xxx``), how it is masked; overrides the
    hub's default policy (see :mod:`ehub.routing`)."""
    delivery: frozenset[DeliveryMode] = frozenset({"pull"})
    """How it receives its records."""
    credential_hints: tuple[str, ...] = ()
    """Hints of its active credentials (never the credentials)."""
    created_at: datetime | None = None
    revoked_at: datetime | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        o = self.code
        if not isinstance(self.code, str) or not CODE_RE.fullmatch(self.code):
            raise OfficeError(
                f"{self.code!r} is not a valid office code: 2-64 of a-z 0-9 _ . -, "
                "starting with a letter or digit",
                field="code",
            )
        if not self.name.strip():
            raise OfficeError("give the office's name", field="name", office=o)
        set_(self, "division", check_division(self.division, o))
        expected = expected_level(self.division, o)
        if self.level != expected:
            raise OfficeError(
                f"level {self.level!r} does not match division {self.division} "
                f"(a {expected} division)",
                field="level",
                office=o,
            )
        set_(self, "kinds", frozenset(check_closed(self.kinds, RECORD_KINDS, "kinds", o)))
        if not self.kinds:
            raise OfficeError("authorize at least one record kind", field="kinds", office=o)
        types = frozenset(self.license_types)
        for t in types:
            if not TYPE_RE.fullmatch(t):
                raise OfficeError(
                    f"{t!r} is not a license type code (18-char USCC + 3 digits)",
                    field="license_types",
                    office=o,
                )
        set_(self, "license_types", types)
        set_(self, "fields", check_fields(self.kinds, self.fields, o))
        set_(self, "masking", check_masking(self.kinds, self.masking, o))
        set_(
            self, "delivery", frozenset(check_closed(self.delivery, DELIVERY_MODES, "delivery", o))
        )
        if not self.delivery:
            raise OfficeError("give at least one delivery mode", field="delivery", office=o)
        set_(self, "credential_hints", tuple(self.credential_hints))

    @property
    def active(self) -> bool:
        return self.revoked_at is None


# --- the store ---------------------------------------------------------------


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _new_token() -> tuple[str, str]:
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, token[: len(TOKEN_PREFIX) + 6]


def _from_row(row: OfficeRow, hints: Iterable[str]) -> Office:
    return Office(
        code=row.code,
        name=row.name,
        division=row.division,
        level=cast(OfficeLevel, row.level),
        kinds=frozenset(cast(list[RecordKind], row.kinds)),
        fields={cast(RecordKind, k): frozenset(v) for k, v in row.fields.items()},
        license_types=frozenset(row.license_types),
        include_children=row.include_children,
        masking=row.masking,
        delivery=frozenset(cast(list[DeliveryMode], row.delivery)),
        credential_hints=tuple(hints),
        created_at=_utc(row.created_at),
        revoked_at=_utc(row.revoked_at),
    )


def _utc(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; the store writes UTC.
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _write(row: OfficeRow, office: Office) -> None:
    row.name = office.name
    row.division = office.division
    row.level = office.level
    row.kinds = sorted(office.kinds)
    row.license_types = sorted(office.license_types)
    row.include_children = office.include_children
    row.fields = {k: sorted(v) for k, v in office.fields.items()}
    row.masking = dict(office.masking)
    row.delivery = sorted(office.delivery)


def add_office(
    store: Store,
    code: str,
    name: str,
    division: str,
    *,
    kinds: Iterable[RecordKind],
    fields: Mapping[RecordKind, Iterable[str]],
    level: OfficeLevel | None = None,
    license_types: Iterable[str] = (),
    include_children: bool = False,
    masking: Mapping[str, MaskMethod] | None = None,
    delivery: Iterable[DeliveryMode] = ("pull",),
) -> tuple[Office, str]:
    """Register an office; returns it and its first credential (shown once, never stored)."""
    division = check_division(division, code)
    office = Office(
        code=code,
        name=name,
        division=division,
        level=level or expected_level(division, code),
        kinds=frozenset(kinds),
        fields={k: frozenset(v) for k, v in fields.items()},
        license_types=frozenset(license_types),
        include_children=include_children,
        masking=dict(masking or {}),
        delivery=frozenset(delivery),
    )
    token, hint = _new_token()
    now = utcnow()
    with store.session() as s:
        if s.get(OfficeRow, code) is not None:
            raise OfficeError("an office with this code exists already", field="code", office=code)
        row = OfficeRow(code=code, created_at=now, revoked_at=None)
        _write(row, office)
        s.add(row)
        s.flush()
        s.add(OfficeCredentialRow(office_code=code, token_sha256=token_digest(token),
                                  token_hint=hint, created_at=now, revoked_at=None))  # fmt: skip
        s.flush()
        return _from_row(row, [hint]), token


def _active_hints(s: Session, code: str) -> list[str]:
    return list(
        s.scalars(
            select(OfficeCredentialRow.token_hint)
            .where(OfficeCredentialRow.office_code == code)
            .where(OfficeCredentialRow.revoked_at.is_(None))
            .order_by(OfficeCredentialRow.id)
        )
    )


def get_office(store: Store, code: str) -> Office:
    """The office with this code (active or revoked); OfficeNotFound otherwise."""
    with store.session() as s:
        row = s.get(OfficeRow, code)
        if row is None:
            raise OfficeNotFound("no such office", field="code", office=code)
        return _from_row(row, _active_hints(s, code))


def list_offices(store: Store, *, include_revoked: bool = True) -> list[Office]:
    """Every office, by code."""
    with store.session() as s:
        q = select(OfficeRow).order_by(OfficeRow.code)
        if not include_revoked:
            q = q.where(OfficeRow.revoked_at.is_(None))
        rows = list(s.scalars(q))
        # Every office's active hints in one query (the publisher re-reads the offices
        # every batch), in the order _active_hints gives them.
        hints: dict[str, list[str]] = {}
        for code, hint in s.execute(
            select(OfficeCredentialRow.office_code, OfficeCredentialRow.token_hint)
            .where(OfficeCredentialRow.revoked_at.is_(None))
            .order_by(OfficeCredentialRow.id)
        ):
            hints.setdefault(code, []).append(hint)
        return [_from_row(r, hints.get(r.code, [])) for r in rows]


def grant(
    store: Store,
    code: str,
    *,
    kinds: Iterable[RecordKind] = (),
    license_types: Iterable[str] = (),
    fields: Mapping[RecordKind, Iterable[str]] | None = None,
    masking: Mapping[str, MaskMethod] | None = None,
    include_children: bool | None = None,
    delivery: Iterable[DeliveryMode] = (),
) -> Office:
    """Widen what an office receives: kinds, license types, fields and delivery
    modes are added to its grants; ``masking`` entries replace those of the same
    field; ``include_children`` is set when given. A newly granted kind needs
    its field scope. The result is validated as a whole before it is stored.
    """
    types = frozenset(license_types)
    with store.session() as s:
        row = s.get(OfficeRow, code)
        if row is None:
            raise OfficeNotFound("no such office", field="code", office=code)
        if row.revoked_at is not None:
            raise OfficeError("the office is revoked", office=code)
        current = _from_row(row, ())
        if types and not current.license_types:
            raise OfficeError(
                "the office receives every license type already; granting some would not widen it",
                field="license_types",
                office=code,
            )
        scopes: dict[RecordKind, AbstractSet[str]] = dict(current.fields)
        for k, v in (fields or {}).items():
            scopes[k] = scopes.get(k, frozenset()) | frozenset(v)
        updated = Office(
            code=code,
            name=current.name,
            division=current.division,
            level=current.level,
            kinds=current.kinds | frozenset(kinds),
            fields=scopes,
            license_types=current.license_types | types,
            include_children=(
                current.include_children if include_children is None else include_children
            ),
            masking={**current.masking, **(masking or {})},
            delivery=current.delivery | frozenset(delivery),
        )
        _write(row, updated)
        s.flush()
        return _from_row(row, _active_hints(s, code))


def issue_credential(store: Store, code: str) -> str:
    """A further credential for an active office (e.g. to rotate); shown once."""
    token, hint = _new_token()
    with store.session() as s:
        row = s.get(OfficeRow, code)
        if row is None:
            raise OfficeNotFound("no such office", field="code", office=code)
        if row.revoked_at is not None:
            raise OfficeError("the office is revoked", office=code)
        s.add(OfficeCredentialRow(office_code=code, token_sha256=token_digest(token),
                                  token_hint=hint, created_at=utcnow(), revoked_at=None))  # fmt: skip
    return token


def revoke(store: Store, code: str, *, credential: str | None = None) -> Office:
    """Revoke one credential (by its hint) or, without ``credential``, the office
    and every credential it holds. Refused from the next authentication."""
    now = utcnow()
    with store.session() as s:
        row = s.get(OfficeRow, code)
        if row is None:
            raise OfficeNotFound("no such office", field="code", office=code)
        creds = list(
            s.scalars(
                select(OfficeCredentialRow)
                .where(OfficeCredentialRow.office_code == code)
                .where(OfficeCredentialRow.revoked_at.is_(None))
            )
        )
        if credential is not None:
            hit = [c for c in creds if c.token_hint == credential]
            if not hit:
                raise OfficeNotFound(
                    f"no active credential with hint {credential!r}",
                    field="credential",
                    office=code,
                )
            hit[0].revoked_at = now
        else:
            if row.revoked_at is not None:
                raise OfficeError(f"the office was revoked already ({row.revoked_at})", office=code)
            row.revoked_at = now
            for c in creds:
                c.revoked_at = now
        s.flush()
        return _from_row(row, _active_hints(s, code))


def authenticate(store: Store, token: str) -> Office | None:
    """The active office holding this active credential, or None."""
    if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX):
        return None
    with store.session() as s:
        cred = s.scalar(
            select(OfficeCredentialRow).where(
                OfficeCredentialRow.token_sha256 == token_digest(token)
            )
        )
        if cred is None or cred.revoked_at is not None:
            return None
        row = s.get(OfficeRow, cred.office_code)
        if row is None or row.revoked_at is not None:
            return None
        return _from_row(row, _active_hints(s, row.code))
