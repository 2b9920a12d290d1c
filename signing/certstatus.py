"""Certificate status shared by the PDF and XML verifiers: trust roots, expiry, CRLs.

Everything here is offline. Trust roots are given explicitly (never the
operating system store); revocation is decided from CRLs the caller supplies
or the document embeds (PAdES DSS), each CRL being accepted only if its
signature verifies with the public key of the certificate's issuer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TypeAlias

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from signing.errors import VerificationError

TrustRoot: TypeAlias = x509.Certificate | asn1_x509.Certificate | Path | str
"""A trust anchor: a certificate object, or the path of a PEM/DER file."""


class CertStatus(StrEnum):
    """Status of a signer certificate at the validation time."""

    TRUSTED = "trusted"
    """Chains to a given trust root, within its validity, not revoked."""
    UNTRUSTED_ROOT = "untrusted_root"
    """No path to any given trust root."""
    EXPIRED = "expired"
    """The certificate or one of its issuers has expired (or is not yet valid)."""
    REVOKED = "revoked"
    """A CRL from the issuer lists the certificate (or one of its issuers)."""
    UNKNOWN = "unknown"
    """Not established: the signature itself is broken, or path validation
    failed for another reason (named in the reasons)."""


@dataclass(frozen=True, slots=True)
class Revocation:
    """A revoked certificate found in a CRL."""

    subject: str
    serial: str
    revoked_at: datetime


def serial_hex(serial: int) -> str:
    """Certificate serial number as upper-case hex (how viewers show it)."""
    return f"{serial:X}"


def common_name(cert: x509.Certificate) -> str:
    """The certificate's CN ('' if none); for a seal certificate, the seal's name."""
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    value = names[0].value if names else ""
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def to_crypto(cert: asn1_x509.Certificate | x509.Certificate) -> x509.Certificate:
    if isinstance(cert, x509.Certificate):
        return cert
    return x509.load_der_x509_certificate(cert.dump())


def load_roots(roots: Sequence[TrustRoot]) -> list[x509.Certificate]:
    """Load trust roots; raises :class:`VerificationError` if none or unreadable."""
    if isinstance(roots, str | Path):
        raise VerificationError("trust_roots must be a sequence of roots, not one path")
    loaded: list[x509.Certificate] = []
    for root in roots:
        if isinstance(root, x509.Certificate | asn1_x509.Certificate):
            loaded.append(to_crypto(root))
            continue
        try:
            data = Path(root).read_bytes()
        except OSError as exc:
            raise VerificationError(f"cannot load trust root {root}: {exc.strerror}") from exc
        try:
            if b"-----BEGIN" in data:
                loaded.extend(x509.load_pem_x509_certificates(data))
            else:
                loaded.append(x509.load_der_x509_certificate(data))
        except ValueError as exc:
            raise VerificationError(f"cannot load trust root {root}: {exc}") from exc
    if not loaded:
        # An empty list would make the validators fall back to a system store.
        raise VerificationError("no trust roots given; refusing to use the system trust store")
    return loaded


def load_crls(paths: Iterable[Path | str | bytes]) -> list[x509.CertificateRevocationList]:
    """Load CRLs given as file paths or DER/PEM bytes."""
    crls = []
    for item in paths:
        try:
            data = item if isinstance(item, bytes) else Path(item).read_bytes()
            if b"-----BEGIN" in data:
                crls.append(x509.load_pem_x509_crl(data))
            else:
                crls.append(x509.load_der_x509_crl(data))
        except (OSError, ValueError) as exc:
            raise VerificationError(f"cannot load CRL {item!r:.80}: {exc}") from exc
    return crls


def expired_in(chain: Iterable[x509.Certificate], moment: datetime) -> x509.Certificate | None:
    """The first certificate of ``chain`` not valid at ``moment`` (None if all are)."""
    for cert in chain:
        if not cert.not_valid_before_utc <= moment <= cert.not_valid_after_utc:
            return cert
    return None


def find_revocation(
    chain: Sequence[x509.Certificate],
    crls: Sequence[x509.CertificateRevocationList],
    moment: datetime,
) -> Revocation | None:
    """A certificate of ``chain`` (leaf first) revoked at or before ``moment``.

    A CRL counts only for certificates whose issuer signed it.
    """
    by_subject = {c.subject: c for c in chain}
    for cert in chain:
        issuer = by_subject.get(cert.issuer)
        if issuer is None or issuer is cert:
            continue
        for crl in crls:
            if crl.issuer != issuer.subject:
                continue
            try:
                if not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
                    continue
            except (TypeError, ValueError):
                continue
            entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
            if entry is not None and entry.revocation_date_utc <= moment:
                return Revocation(
                    subject=cert.subject.rfc4514_string(),
                    serial=serial_hex(cert.serial_number),
                    revoked_at=entry.revocation_date_utc,
                )
    return None


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)
