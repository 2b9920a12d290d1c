"""Verify the PAdES seals of a PDF against explicit trust roots, offline.

:func:`verify_pdf` returns a :class:`PdfVerification` verdict; a document that
is unsigned, tampered with, unreadable or sealed under another root is a
verdict (``valid=False`` with reasons), not an exception. Only a problem with
the verification *setup* (no or unreadable trust roots) raises
:class:`signing.errors.VerificationError`.

Nothing is fetched: no OCSP, CRL or AIA (``allow_fetching=False``), and since
the hub has no revocation data yet, revocation checking is soft-fail. The
operating system trust store is never used.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TypeAlias

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from pyhanko.keys import load_certs_from_pemder
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko.sign.validation.status import PdfSignatureStatus, SignatureCoverageLevel
from pyhanko_certvalidator import ValidationContext

from signing.errors import VerificationError

TrustRoot: TypeAlias = x509.Certificate | asn1_x509.Certificate | Path | str
"""A trust anchor: a certificate object, or the path of a PEM/DER file."""

# Errors pyHanko raises on malformed PDFs or CMS structures (its own error
# classes derive from these).
_VENDOR_ERRORS = (PdfError, ValueError, KeyError, TypeError, IndexError)


@dataclass(frozen=True, slots=True)
class PdfVerification:
    """Verdict on the signatures of one PDF (describing the newest one)."""

    valid: bool
    """Every signature is intact, cryptographically valid and trusted, and any
    later incremental update is one pyHanko's diff policy accepts."""
    intact: bool
    """The signed byte ranges still hash to the signed digest (all signatures)."""
    trusted: bool
    """The signers' certificates chain to a given trust root with the right key
    usage (all signatures)."""
    signer_subject: str
    """RFC 4514 subject of the newest signature's certificate ('' if none)."""
    signing_time: datetime | None
    """Signing time claimed by the newest signature (not proven without a TSA)."""
    digest_algorithm: str
    """Message digest of the newest signature, e.g. 'sha256' ('' if none)."""
    covers_whole_document: bool
    """The newest signature covers every byte of the file."""
    reasons: tuple[str, ...] = ()
    """Why the document is not valid (empty when valid)."""
    signature_count: int = 0
    """Number of (non-timestamp) signatures found."""


def verify_pdf(
    pdf: bytes,
    trust_roots: Sequence[TrustRoot],
    *,
    validation_time: datetime | None = None,
) -> PdfVerification:
    """Validate every signature in ``pdf`` against ``trust_roots`` only.

    ``validation_time`` is the moment certificates must be valid at; ``None``
    means now.
    """
    context = ValidationContext(
        trust_roots=_load_roots(trust_roots),
        allow_fetching=False,
        revocation_mode="soft-fail",
        moment=validation_time,
    )
    try:
        reader = PdfFileReader(io.BytesIO(pdf), strict=False)
        signatures = reader.embedded_regular_signatures
    except _VENDOR_ERRORS as exc:
        return _failed(f"the PDF cannot be read: {exc}")
    if not signatures:
        return _failed("the PDF carries no signature")

    reasons: list[str] = []
    intact = trusted = sound = True
    status: PdfSignatureStatus | None = None
    for embedded in signatures:
        name = embedded.field_name
        try:
            status = validate_pdf_signature(embedded, context)
        except _VENDOR_ERRORS as exc:
            reasons.append(f"signature {name}: cannot be validated: {exc}")
            intact = trusted = sound = False
            status = None
            continue
        reasons.extend(_explain(name, status))
        intact &= status.intact
        trusted &= status.trusted
        sound &= status.bottom_line

    if status is None:
        return _failed(*reasons, count=len(signatures))
    subject = x509.load_der_x509_certificate(status.signing_cert.dump()).subject
    return PdfVerification(
        valid=intact and trusted and sound and not reasons,
        intact=intact,
        trusted=trusted,
        signer_subject=subject.rfc4514_string(),
        signing_time=status.signer_reported_dt,
        digest_algorithm=status.md_algorithm,
        covers_whole_document=status.coverage == SignatureCoverageLevel.ENTIRE_FILE,
        reasons=tuple(reasons),
        signature_count=len(signatures),
    )


def _explain(name: str, status: PdfSignatureStatus) -> list[str]:
    reasons = []
    if not status.intact:
        reasons.append(f"signature {name}: the signed bytes were modified after sealing")
    if not status.valid:
        reasons.append(f"signature {name}: the signature value does not verify")
    if status.intact and status.valid and not status.trusted:
        problem = status.trust_problem_indic
        why = str(problem.standard_name) if problem is not None else "no path to a trust root"
        reasons.append(f"signature {name}: the signer certificate is not trusted ({why})")
    if status.intact and status.valid and status.trusted and not status.bottom_line:
        level = status.modification_level
        reasons.append(
            f"signature {name}: the document was changed after sealing in a way "
            f"the modification policy rejects ({level.name if level else 'unknown'})"
        )
    return reasons


def _failed(*reasons: str, count: int = 0) -> PdfVerification:
    return PdfVerification(
        valid=False,
        intact=False,
        trusted=False,
        signer_subject="",
        signing_time=None,
        digest_algorithm="",
        covers_whole_document=False,
        reasons=reasons,
        signature_count=count,
    )


def _load_roots(roots: Sequence[TrustRoot]) -> list[asn1_x509.Certificate]:
    if isinstance(roots, str | Path):
        raise VerificationError("trust_roots must be a sequence of roots, not one path")
    loaded: list[asn1_x509.Certificate] = []
    for root in roots:
        if isinstance(root, asn1_x509.Certificate):
            loaded.append(root)
        elif isinstance(root, x509.Certificate):
            loaded.append(asn1_x509.Certificate.load(root.public_bytes(Encoding.DER)))
        else:
            try:
                loaded.extend(load_certs_from_pemder([str(root)]))
            except (OSError, ValueError) as exc:
                raise VerificationError(f"cannot load trust root {root}: {exc}") from exc
    if not loaded:
        # An empty list would make pyHanko fall back to the OS trust store.
        raise VerificationError("no trust roots given; refusing to use the system trust store")
    return loaded
