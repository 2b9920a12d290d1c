"""Revocation in the development PKI: list seal certificates, revoke, re-sign CRLs.

Revoking enters the certificate on the intermediate's CRL (``crl/intermediate.crl``),
which :mod:`signing.pki_services` serves at the URL written in every seal
certificate's CRL distribution point. The CRL file is the record: there is no
other list of revoked serials.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12

from signing import pki_build
from signing.errors import SigningError
from signing.pki import (
    ROOT_KEY,
    SEALS_DIR,
    DevPKI,
    _check_p12_opens,
    _load_key,
    _locked,
    _refresh_crls,
    _write_atomic,
)


@dataclass(frozen=True)
class SealCertificate:
    """A seal certificate issued by the PKI (public data only)."""

    path: Path
    subject: str
    serial: int
    not_before: dt.datetime
    not_after: dt.datetime
    crl_urls: tuple[str, ...]


@dataclass(frozen=True)
class Revocation:
    """One certificate entered on the intermediate's CRL."""

    serial: int
    revoked_at: dt.datetime
    reason: str
    crl_path: Path


def list_seal_certificates(pki: DevPKI) -> list[SealCertificate]:
    """Every seal certificate of the PKI: ``seal.p12`` and ``seals/*.p12``."""
    paths = [pki.seal_p12_path, *sorted((pki.directory / SEALS_DIR).glob("*.p12"))]
    found = []
    for path in paths:
        if not path.exists():
            continue
        cert = _p12_cert(path, pki.passphrase)
        try:
            dps = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
            urls = tuple(
                str(name.value) for dp in dps for name in (dp.full_name or ()) if name.value
            )
        except x509.ExtensionNotFound:
            urls = ()
        found.append(
            SealCertificate(
                path=path,
                subject=cert.subject.rfc4514_string(),
                serial=cert.serial_number,
                not_before=cert.not_valid_before_utc,
                not_after=cert.not_valid_after_utc,
                crl_urls=urls,
            )
        )
    return found


def revoke_seal_certificate(
    pki: DevPKI,
    serial: int,
    *,
    reason: x509.ReasonFlags | None = None,
    when: dt.datetime | None = None,
) -> Revocation:
    """Enter seal certificate ``serial`` on the intermediate's CRL and re-sign it.

    Only certificates issued by this PKI's intermediate (see
    :func:`list_seal_certificates`) can be revoked; revoking twice keeps the
    first entry. ``when`` (default: now) is the revocation date.
    """
    known = {c.serial for c in list_seal_certificates(pki)}
    if serial not in known:
        raise SigningError(f"no seal certificate with serial {serial:X} was issued by this PKI")
    at = (when or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(microsecond=0)
    crl_path = pki.intermediate_crl_path
    with _locked(pki.directory):
        inter_cert = pki.intermediate_cert()
        inter_key = _load_key(pki.intermediate_key_path, pki.passphrase)
        previous = pki_build.load_crl(crl_path)
        existing = previous.get_revoked_certificate_by_serial_number(serial) if previous else None
        if existing is not None and previous is not None and previous.issuer == inter_cert.subject:
            return Revocation(serial, existing.revocation_date_utc, _reason(existing), crl_path)
        entry = pki_build.revoked_entry(serial, at, reason)
        crl = pki_build.build_crl(
            inter_cert, inter_key, previous, add=entry, now=dt.datetime.now(dt.UTC)
        )
        crl_path.parent.mkdir(mode=0o755, exist_ok=True)
        _write_atomic(crl_path, pki_build.crl_der(crl), 0o644)
    return Revocation(serial, at, _reason(entry), crl_path)


def refresh_crls(pki: DevPKI) -> None:
    """Re-sign the CRLs that are missing or near their nextUpdate (entries kept)."""
    with _locked(pki.directory):
        root = (pki.root_cert(), _load_key(pki.directory / ROOT_KEY, pki.passphrase))
        inter = (pki.intermediate_cert(), _load_key(pki.intermediate_key_path, pki.passphrase))
        _refresh_crls(pki.directory, root, inter)


# --- internals -------------------------------------------------------------


def _reason(entry: x509.RevokedCertificate) -> str:
    try:
        return str(entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.name)
    except x509.ExtensionNotFound:
        return "unspecified"


def _p12_cert(path: Path, secret: str) -> x509.Certificate:
    _check_p12_opens(path, secret)
    _, cert, _ = pkcs12.load_key_and_certificates(path.read_bytes(), secret.encode("utf-8"))
    assert cert is not None  # checked by _check_p12_opens
    return cert
