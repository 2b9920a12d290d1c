"""The seal registry (印章库): register, list, suspend, revoke and select seals.

Airflow-free. A seal belongs to a department (name, USCC, GB/T 2260 division)
and is used for the license types it lists (empty = any type). Its
certificate comes from the development PKI (:func:`signing.pki.issue_seal_certificate`)
unless one is imported with its key reference (a PKCS#12 path or a PKCS#11 URI).

Status transitions (every one recorded as an audit event)::

    active ──suspend──▶ suspended ──resume──▶ active
    active | suspended ──revoke──▶ revoked      (final)

Seal selection (:func:`select_seal`) for a license issued by the department
with USCC *U*, of type *T*, at time *t*:

1. the seals registered for *U* itself that cover *T*; if there are none,
2. the ``cross_level`` seals (跨层级用章) covering *T* whose division contains
   the issuer's division (characters 3-8 of *U*), the most specific division first.

The first of these levels that has any seal decides: an active seal valid at
*t* there is used (the latest ``valid_from`` wins); otherwise the license
cannot be sealed and :class:`NoUsableSeal` says precisely why. A suspended
department seal is not silently replaced by a provincial cross-level seal.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from ehub.audit import Event, append
from ehub.errors import HubError, Terminal
from ehub.identifiers import is_valid_uscc
from ehub.pipeline import outbox
from ehub.seal_registration import export_registration
from ehub.store.db import utcnow
from ehub.store.models import SealRow

__all__ = ["export_registration"]  # part of this module's API, kept in its own file

if TYPE_CHECKING:
    from cryptography import x509

    from ehub.config import Settings
    from ehub.store.db import Store

ACTIVE, SUSPENDED, REVOKED = "active", "suspended", "revoked"
STATUSES = (ACTIVE, SUSPENDED, REVOKED)
DEFAULT_SEAL_TYPE = "电子证照专用章"
IMAGES_DIR = "seals"
_TYPE_CODE = re.compile(r"[0-9A-Z]{21}")
_DIVISION = re.compile(r"\d{6}")
_TIMES = ("suspended_at", "revoked_at", "registered_at", "valid_from", "valid_until", "created_at")

# --- errors ------------------------------------------------------------------


class SealRegistryError(HubError, Terminal):
    """A seal registry operation failed; ``reason`` is a machine code."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


class SealNotFound(SealRegistryError):
    """No seal has the given code."""


class InvalidSealTransition(SealRegistryError):
    """The status change is not allowed from the seal's current status."""


class NoUsableSeal(SealRegistryError):
    """No seal may seal the license now. ``reason`` is one of :data:`SELECTION_REASONS`."""


#: Why :func:`select_seal` found no seal, in the order they are reported.
SELECTION_REASONS = (
    "no_seal",  # the department has no seal at all (and no cross-level seal covers it)
    "no_seal_for_type",  # it has seals, none for this license type
    "suspended",
    "not_yet_valid",
    "expired",
    "revoked",
    "key_unavailable",  # the seal stage cannot open the selected seal's key
    "service_unavailable",  # the TSA or a revocation endpoint failed (B-T / B-LT), after retries
    "unsealable",  # the license cannot be rendered or signed (e.g. it does not fit the page)
)


# --- the seal ----------------------------------------------------------------


@dataclass(frozen=True)
class Seal:
    """One registered seal (a row of the ``seals`` table)."""

    id: int
    code: str
    department: str
    department_uscc: str
    division: str
    name: str
    seal_type: str
    license_types: tuple[str, ...]
    cross_level: bool
    image_path: str | None
    image_sha256: str | None
    cert_pem: str
    chain_pem: str | None
    key_ref: str
    status: str
    status_reason: str | None
    suspended_at: datetime | None
    revoked_at: datetime | None
    registration_no: str | None
    registered_at: datetime | None
    valid_from: datetime
    valid_until: datetime
    created_at: datetime

    @classmethod
    def from_row(cls, row: SealRow) -> Seal:
        values: dict[str, Any] = {f.name: getattr(row, f.name) for f in fields(cls)}
        values["license_types"] = tuple(row.license_types or ())
        values["cross_level"] = bool(row.cross_level)
        for name in _TIMES:
            values[name] = _aware(values[name])
        return cls(**values)

    def certificate(self) -> x509.Certificate:
        from cryptography import x509

        return x509.load_pem_x509_certificate(self.cert_pem.encode())

    def covers_type(self, type_code: str) -> bool:
        return not self.license_types or type_code in self.license_types

    def problem_at(self, at: datetime) -> str | None:
        """Why the seal cannot seal at ``at`` (a reason code), or None when it can."""
        if self.status != ACTIVE:
            return self.status
        if at < self.valid_from:
            return "not_yet_valid"
        if at >= self.valid_until:
            return "expired"
        return None


# --- registering -------------------------------------------------------------


def create_seal(
    store: Store,
    settings: Settings,
    *,
    department: str,
    department_uscc: str,
    name: str,
    division: str | None = None,
    seal_type: str = DEFAULT_SEAL_TYPE,
    license_types: Sequence[str] = (),
    code: str | None = None,
    cross_level: bool = False,
    cert_pem: str | None = None,
    chain_pem: str | None = None,
    key_ref: str | None = None,
    image: bytes | None = None,
    valid_from: datetime | None = None,
    valid_until: datetime | None = None,
) -> Seal:
    """Register a seal. Without ``cert_pem`` the dev PKI issues its certificate
    (key in a PKCS#12 bundle under ``<home>/pki/seals``); with it, ``key_ref``
    must say where the key lives. The seal's validity window is the
    certificate's, optionally narrowed by ``valid_from`` / ``valid_until``.
    Without ``image`` a red round seal PNG is drawn."""
    department, name = department.strip(), name.strip()
    if not department or not name:
        raise SealRegistryError("invalid", "a seal needs a department name and a seal name")
    if not is_valid_uscc(department_uscc):
        raise SealRegistryError("invalid", f"department USCC {department_uscc!r} is not valid")
    division = division or department_uscc[2:8]
    if not _DIVISION.fullmatch(division):
        raise SealRegistryError("invalid", f"division {division!r} is not a 6-digit GB/T 2260 code")
    types = tuple(dict.fromkeys(t.strip().upper() for t in license_types if t.strip()))
    bad = [t for t in types if not _TYPE_CODE.fullmatch(t)]
    if bad:
        raise SealRegistryError("invalid", f"license type code(s) {bad} are not 21 of [0-9A-Z]")
    if cert_pem is None:
        if key_ref is not None:
            raise SealRegistryError("invalid", "key_ref is only given with an imported certificate")
        cert_pem, chain_pem, key_ref = _issue_dev_certificate(
            settings, department, department_uscc, name
        )
    elif not key_ref:
        raise SealRegistryError(
            "invalid", "an imported certificate needs key_ref (p12 path / pkcs11 URI)"
        )
    cert = _load_cert(cert_pem)
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    valid_from = max(start, _aware_req(valid_from)) if valid_from else start
    valid_until = min(end, _aware_req(valid_until)) if valid_until else end
    if valid_from >= valid_until:
        raise SealRegistryError("invalid", "the seal's validity window is empty")
    png = image if image is not None else _draw(department, seal_type)
    with store.session() as s:
        if code is None:
            count = len(
                s.scalars(
                    select(SealRow.id).where(SealRow.department_uscc == department_uscc)
                ).all()
            )
            code = f"{division}-{department_uscc[8:17]}-{count + 1:02d}"
        if s.scalar(select(SealRow.id).where(SealRow.code == code)) is not None:
            raise SealRegistryError("exists", f"a seal with code {code} is already registered")
        in_use = s.scalar(select(SealRow.code).where(SealRow.cert_pem == cert_pem))
        if in_use is not None:
            raise SealRegistryError("invalid", f"seal {in_use} already uses this certificate")
        image_path = settings.home / IMAGES_DIR / f"{_safe(code)}.png"
        image_path.parent.mkdir(parents=True, exist_ok=True)
        image_path.write_bytes(png)
        row = SealRow(
            code=code,
            department=department,
            department_uscc=department_uscc,
            division=division,
            name=name,
            seal_type=seal_type,
            license_types=list(types),
            cross_level=cross_level,
            image_path=str(image_path),
            image_sha256=hashlib.sha256(png).hexdigest(),
            cert_pem=cert_pem,
            chain_pem=chain_pem or None,
            key_ref=key_ref,
            status=ACTIVE,
            valid_from=valid_from,
            valid_until=valid_until,
            created_at=utcnow(),
        )
        s.add(row)
        s.flush()
        seal = Seal.from_row(row)
        outbox.insert(s, outbox.rows_for("seal", row.id, code, 1))  # 备案 to the national platform
        append(s, [Event("seal_registered", code, None, _brief(seal))])
    return seal


def _issue_dev_certificate(
    settings: Settings, department: str, uscc: str, name: str
) -> tuple[str, str, str]:
    from cryptography.hazmat.primitives.serialization import Encoding, pkcs12

    from signing.pki import ensure_dev_pki, issue_seal_certificate

    pki = ensure_dev_pki(settings.home / "pki")
    p12 = issue_seal_certificate(pki, department, uscc, name)
    _key, cert, chain = pkcs12.load_key_and_certificates(p12.read_bytes(), pki.passphrase.encode())
    assert cert is not None
    return (
        cert.public_bytes(Encoding.PEM).decode(),
        "".join(c.public_bytes(Encoding.PEM).decode() for c in chain),
        str(p12),
    )


def _load_cert(pem: str) -> x509.Certificate:
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
    except ValueError as exc:
        raise SealRegistryError("invalid", f"the seal certificate is not PEM: {exc}") from exc
    try:
        if cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            raise SealRegistryError("invalid", "a CA certificate cannot be a seal certificate")
    except x509.ExtensionNotFound:
        pass
    return cert


def _draw(department: str, seal_type: str) -> bytes:
    from ehub.seal_image import render_seal_png

    return render_seal_png(department, seal_type)


# --- reading -----------------------------------------------------------------


def list_seals(
    store: Store, *, department_uscc: str | None = None, status: str | None = None
) -> list[Seal]:
    stmt = select(SealRow).order_by(SealRow.department_uscc, SealRow.id)
    if department_uscc:
        stmt = stmt.where(SealRow.department_uscc == department_uscc)
    if status:
        stmt = stmt.where(SealRow.status == status)
    with store.session() as s:
        return [Seal.from_row(r) for r in s.scalars(stmt)]


def get_seal(store: Store, code: str) -> Seal:
    with store.session() as s:
        row = s.scalar(select(SealRow).where(SealRow.code == code))
        if row is None:
            raise SealNotFound("not_found", f"no seal with code {code} is registered")
        return Seal.from_row(row)


# --- status ------------------------------------------------------------------

_ALLOWED = {
    "suspend": ({ACTIVE}, SUSPENDED),
    "resume": ({SUSPENDED}, ACTIVE),
    "revoke": ({ACTIVE, SUSPENDED}, REVOKED),
}


def suspend_seal(store: Store, code: str, reason: str) -> Seal:
    """Stop using a seal for now (e.g. its key is suspected compromised)."""
    return _transition(store, code, "suspend", reason)


def resume_seal(store: Store, code: str, reason: str = "") -> Seal:
    """Use a suspended seal again."""
    return _transition(store, code, "resume", reason)


def revoke_seal(store: Store, code: str, reason: str) -> Seal:
    """Retire a seal for good. A dev-PKI key bundle moves to ``<pki>/seals/retired``
    so that a new seal of the same name gets a new key and certificate."""
    seal = _transition(store, code, "revoke", reason)
    key = Path(seal.key_ref)
    if key.suffix == ".p12" and key.parent.name == "seals" and key.is_file():
        retired = key.parent / "retired" / f"{key.stem}.{_safe(code)}.p12"
        retired.parent.mkdir(mode=0o700, exist_ok=True)
        shutil.move(key, retired)
        with store.session() as s:
            row = s.scalar(select(SealRow).where(SealRow.code == code))
            assert row is not None
            row.key_ref = str(retired)
        seal = replace(seal, key_ref=str(retired))
    return seal


def _transition(store: Store, code: str, action: str, reason: str) -> Seal:
    allowed, target = _ALLOWED[action]
    reason = reason.strip()
    if action != "resume" and not reason:
        raise SealRegistryError("invalid", f"{action} needs a reason")
    with store.session() as s:
        row = s.scalar(select(SealRow).where(SealRow.code == code).with_for_update())
        if row is None:
            raise SealNotFound("not_found", f"no seal with code {code} is registered")
        if row.status not in allowed:
            final = " (revocation is final)" if row.status == REVOKED else ""
            raise InvalidSealTransition(
                "invalid_transition", f"cannot {action} seal {code}: it is {row.status}{final}"
            )
        now = utcnow()
        before = row.status
        row.status = target
        row.status_reason = reason or None
        if target == SUSPENDED:
            row.suspended_at = now
        elif target == REVOKED:
            row.revoked_at = now
        elif target == ACTIVE:
            row.suspended_at = None
        append(
            s,
            [Event(f"seal_{target}", code, None, {"from": before, "to": target, "reason": reason})],
        )
        s.flush()
        return Seal.from_row(row)


def record_registration(
    store: Store, code: str, registration_no: str, at: datetime | None = None
) -> Seal:
    """Record the national platform's acceptance (备案号) of the seal's registration."""
    registration_no = registration_no.strip()
    if not registration_no:
        raise SealRegistryError("invalid", "the registration number is empty")
    with store.session() as s:
        row = s.scalar(select(SealRow).where(SealRow.code == code))
        if row is None:
            raise SealNotFound("not_found", f"no seal with code {code} is registered")
        row.registration_no = registration_no
        row.registered_at = at or utcnow()
        append(s, [Event("seal_registration", code, None, {"registration_no": registration_no})])
        s.flush()
        return Seal.from_row(row)


# --- selection ---------------------------------------------------------------


@dataclass(frozen=True)
class SealRegistry:
    """A snapshot of every seal, for selecting seals of many licenses at once."""

    seals: tuple[Seal, ...]

    @classmethod
    def load(cls, store: Store) -> SealRegistry:
        with store.session() as s:
            return cls(
                tuple(Seal.from_row(r) for r in s.scalars(select(SealRow).order_by(SealRow.id)))
            )

    def select(self, department_uscc: str, license_type_code: str, at: datetime) -> Seal:
        """The seal to use, or :class:`NoUsableSeal` with the precise reason."""
        at = _aware_req(at)
        own = [x for x in self.seals if x.department_uscc == department_uscc]
        level = [x for x in own if x.covers_type(license_type_code)]
        where = f"department {department_uscc}"
        if not level:
            level, where = self._cross_level(department_uscc, license_type_code)
        if not level:
            if own:
                raise NoUsableSeal(
                    "no_seal_for_type",
                    f"{where} has seals ({', '.join(x.code for x in own)}) but none for "
                    f"license type {license_type_code}",
                )
            raise NoUsableSeal("no_seal", f"no seal is registered for department {department_uscc}")
        usable = [x for x in level if x.problem_at(at) is None]
        if usable:
            return max(usable, key=lambda x: (x.valid_from, x.id))
        problems = {x.code: x.problem_at(at) or "" for x in level}
        reason = min(problems.values(), key=SELECTION_REASONS.index)
        detail = ", ".join(
            f"{x.code} {problems[x.code]}" + (f" ({x.status_reason})" if x.status_reason else "")
            for x in level
        )
        raise NoUsableSeal(reason, f"no usable seal of {where} for {license_type_code}: {detail}")

    def _cross_level(self, uscc: str, type_code: str) -> tuple[list[Seal], str]:
        division = uscc[2:8]
        best: list[Seal] = []
        best_len = -1
        for x in self.seals:
            prefix = _division_prefix(x.division)
            if x.cross_level and x.covers_type(type_code) and division.startswith(prefix):
                if len(prefix) > best_len:
                    best, best_len = [x], len(prefix)
                elif len(prefix) == best_len:
                    best.append(x)
        where = f"cross-level seals over division {division}"
        return best, where


def select_seal(store: Store, department_uscc: str, license_type_code: str, at: datetime) -> Seal:
    """The active seal, valid at ``at``, for a license of ``license_type_code``
    issued by ``department_uscc``; raises :class:`NoUsableSeal` saying why none."""
    return SealRegistry.load(store).select(department_uscc, license_type_code, at)


def _division_prefix(division: str) -> str:
    """``370000`` → ``37``, ``370100`` → ``3701``, ``370102`` → ``370102``."""
    out = division
    while len(out) > 2 and out.endswith("00"):
        out = out[:-2]
    return out


# --- helpers -----------------------------------------------------------------


def _brief(seal: Seal) -> dict[str, Any]:
    return {
        "department_uscc": seal.department_uscc,
        "name": seal.name,
        "license_types": list(seal.license_types),
        "cross_level": seal.cross_level,
        "valid_until": seal.valid_until.isoformat(),
    }


def _safe(code: str) -> str:
    return re.sub(r"[^0-9A-Za-z._-]", "_", code)


def _aware(value: datetime | None) -> datetime | None:
    return None if value is None else _aware_req(value)


def _aware_req(value: datetime) -> datetime:
    """SQLite returns naive datetimes for timezone columns: they are UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
