"""Verify the PAdES seals of a PDF against explicit trust roots, offline.

:func:`verify_pdf` returns a :class:`PdfVerification` verdict with one
:class:`SignatureReport` per signature; a document that is unsigned, tampered
with, unreadable or sealed under another root is a verdict (``valid=False``
with reasons), not an exception. Only a problem with the verification *setup*
(no or unreadable trust roots or CRLs) raises
:class:`signing.errors.VerificationError`.

Nothing is fetched: no OCSP, CRL or AIA (``allow_fetching=False``). Revocation
is decided from the CRLs/OCSP responses embedded in the document's DSS
(PAdES B-LT) and the CRLs the caller passes; without any, revocation checking
is soft-fail. The operating system trust store is never used.

Modification policy: after a seal, only LTA updates (DSS, document
timestamps) and the filling of (signature) form fields are accepted
(``max_modification``); an added annotation or a changed page is not, even
where pyHanko's own DocMDP reading would tolerate it for an approval signature.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from asn1crypto import crl as asn1_crl
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.diff_analysis import ModificationLevel
from pyhanko.sign.fields import enumerate_sig_fields
from pyhanko.sign.general import SigningError as PyHankoSigningError
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko.sign.validation.dss import DocumentSecurityStore, NoDSSFoundError
from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature
from pyhanko.sign.validation.status import PdfSignatureStatus, SignatureCoverageLevel
from pyhanko_certvalidator import ValidationContext

from signing.certstatus import (
    CertStatus,
    TrustRoot,
    common_name,
    der,
    expired_in,
    find_revocation,
    load_roots,
    serial_hex,
    to_crypto,
)

__all__ = [
    "CertStatus",
    "Coverage",
    "Integrity",
    "LicenseStatusLookup",
    "PdfVerification",
    "SignatureReport",
    "TimestampReport",
    "TrustRoot",
    "verify_pdf",
]

log = logging.getLogger(__name__)

LicenseStatusLookup = Callable[[str], str | None]
"""Hook: license identifier (GB/T 36904) -> the license's status in the hub
register ('valid', 'revoked', ...) or None when unknown. A status other than
'valid' makes an otherwise valid document invalid."""

# Errors pyHanko raises on malformed PDFs or CMS structures (its own error
# classes derive from these).
_VENDOR_ERRORS = (PdfError, PyHankoSigningError, ValueError, KeyError, TypeError, IndexError)


class Integrity(StrEnum):
    INTACT = "intact"
    """The signed byte ranges hash to the signed digest."""
    MODIFIED = "modified"
    """Bytes inside the signed ranges were changed after signing."""
    BROKEN = "broken"
    """The signature container cannot be read (e.g. /Contents zeroed)."""


class Coverage(StrEnum):
    WHOLE_DOCUMENT = "whole_document"
    """The signature covers every byte of the file."""
    ALLOWED_UPDATES = "allowed_updates"
    """Later incremental updates exist and the modification policy accepts them."""
    DISALLOWED_UPDATES = "disallowed_updates"
    """Later incremental updates change the document beyond what is allowed."""
    UNKNOWN = "unknown"
    """Not established (the signature could not be validated)."""


@dataclass(frozen=True, slots=True)
class TimestampReport:
    """The RFC 3161 signature timestamp of one signature, if any."""

    present: bool
    valid: bool = False
    """Intact, cryptographically valid and issued by a trusted TSA."""
    time: datetime | None = None
    tsa_subject: str = ""


@dataclass(frozen=True, slots=True)
class SignatureReport:
    """Verdict on one signature of a PDF."""

    field_name: str
    valid: bool
    integrity: Integrity
    coverage: Coverage
    modification_level: str
    """pyHanko's modification level after signing (NONE, LTA_UPDATES,
    FORM_FILLING, ANNOTATIONS, OTHER) or '' if unknown."""
    docmdp: str
    """DocMDP permission of a certification signature ('' for an approval seal)."""
    signer_subject: str
    cert_serial: str
    seal_name: str
    """The signature's /Name, else the seal certificate's CN."""
    signing_time: datetime | None
    """Claimed signing time (proven only by a valid timestamp)."""
    timestamp: TimestampReport
    cert_status: CertStatus
    digest_algorithm: str
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PdfVerification:
    """Verdict on the signatures of one PDF (top-level fields: the newest one)."""

    valid: bool
    """Every signature is intact, cryptographically valid and trusted, and any
    later incremental update is one the modification policy accepts."""
    intact: bool
    """The signed byte ranges still hash to the signed digest (all signatures)."""
    trusted: bool
    """The signers' certificates chain to a given trust root, unexpired and not
    revoked (all signatures)."""
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
    signatures: tuple[SignatureReport, ...] = ()
    """One report per signature, oldest first."""
    readable: bool = True
    """False when the input is not a readable PDF at all."""
    license_identifier: str = ""
    """The license identifier the PDF carries (document /Subject), '' if none."""
    license_status: str | None = None
    """The license's status from the ``license_status`` hook (None: not asked)."""


def verify_pdf(
    pdf: bytes,
    trust_roots: Sequence[TrustRoot],
    *,
    validation_time: datetime | None = None,
    crls: Sequence[x509.CertificateRevocationList] = (),
    tsa_roots: Sequence[TrustRoot] | None = None,
    max_modification: ModificationLevel = ModificationLevel.FORM_FILLING,
    license_status: LicenseStatusLookup | None = None,
) -> PdfVerification:
    """Validate every signature in ``pdf`` against ``trust_roots`` only.

    ``validation_time`` is the moment certificates must be valid at (``None``:
    now). ``crls`` are extra revocation lists (those in the document's DSS are
    always used). ``tsa_roots`` anchor timestamp tokens (default: the trust
    roots). ``license_status`` is the hook to the license register.
    """
    roots = load_roots(trust_roots)
    ts_roots = load_roots(tsa_roots) if tsa_roots is not None else roots
    moment = validation_time or datetime.now(UTC)
    try:
        reader = PdfFileReader(io.BytesIO(pdf), strict=False)
        signatures, broken = _collect(reader)
    except _VENDOR_ERRORS as exc:
        return _failed(f"the PDF cannot be read: {exc}", readable=False)
    if not signatures and not broken:
        return _failed("the PDF carries no signature")

    kwargs = {
        "allow_fetching": False,
        "revocation_mode": "soft-fail",
        "moment": validation_time,
        "crls": [asn1_crl.CertificateList.load(c.public_bytes(Encoding.DER)) for c in crls],
    }
    context = _context(reader, _asn1(roots), kwargs)
    ts_context = context if tsa_roots is None else _context(reader, _asn1(ts_roots), kwargs)
    all_crls = [*crls, *_dss_crls(reader)]
    reports = [
        _check(sig, context, ts_context, all_crls, roots, moment, max_modification)
        for sig in signatures
    ]
    reports += [_broken(name, "", why) for name, why in broken]
    newest = reports[-1]
    reasons = [r for rep in reports for r in rep.reasons]
    identifier = _license_identifier(reader, signatures[0].signed_revision if signatures else None)
    status = None
    if license_status is not None and identifier:
        status = license_status(identifier)
        if status is not None and status != "valid":
            reasons.append(f"the license {identifier} is {status} in the register")
    return PdfVerification(
        valid=not reasons and all(r.valid for r in reports),
        intact=all(r.integrity == Integrity.INTACT for r in reports),
        trusted=all(r.cert_status == CertStatus.TRUSTED for r in reports),
        signer_subject=newest.signer_subject,
        signing_time=newest.signing_time,
        digest_algorithm=newest.digest_algorithm,
        covers_whole_document=newest.coverage == Coverage.WHOLE_DOCUMENT,
        reasons=tuple(reasons),
        signature_count=len(reports),
        signatures=tuple(reports),
        license_identifier=identifier,
        license_status=status,
    )


def _check(
    embedded: EmbeddedPdfSignature,
    context: ValidationContext,
    ts_context: ValidationContext,
    crls: Sequence[x509.CertificateRevocationList],
    roots: Sequence[x509.Certificate],
    moment: datetime,
    max_level: ModificationLevel,
) -> SignatureReport:
    name = embedded.field_name
    seal_name = _sig_name(embedded)
    try:
        status = validate_pdf_signature(embedded, context, ts_context)
    except _VENDOR_ERRORS as exc:
        return _broken(name, seal_name, str(exc))
    leaf = to_crypto(status.signing_cert)
    chain = [leaf, *(to_crypto(c) for c in embedded.other_embedded_certs), *roots]
    cert_status, cert_why = _cert_status(status, chain, crls, moment)
    coverage = _coverage(status, max_level)
    timestamp = _timestamp(status)
    reasons = []
    if not status.intact:
        reasons.append(f"signature {name}: the signed bytes were modified after sealing")
    elif not status.valid:
        reasons.append(f"signature {name}: the signature value does not verify")
    if cert_status != CertStatus.TRUSTED and (status.intact and status.valid):
        reasons.append(f"signature {name}: the signer certificate is not trusted ({cert_why})")
    if coverage == Coverage.DISALLOWED_UPDATES:
        level = status.modification_level
        reasons.append(
            f"signature {name}: the document was changed after sealing in a way "
            f"the modification policy rejects ({level.name if level else 'unknown'})"
        )
    if timestamp.present and not timestamp.valid:
        reasons.append(f"signature {name}: the signature timestamp is not valid or not trusted")
    docmdp = embedded.docmdp_level
    level = status.modification_level
    return SignatureReport(
        field_name=name,
        valid=not reasons,
        integrity=Integrity.INTACT if status.intact else Integrity.MODIFIED,
        coverage=coverage,
        modification_level=level.name if level is not None else "",
        docmdp=docmdp.name if docmdp is not None else "",
        signer_subject=leaf.subject.rfc4514_string(),
        cert_serial=serial_hex(leaf.serial_number),
        seal_name=seal_name or common_name(leaf),
        signing_time=status.signer_reported_dt,
        timestamp=timestamp,
        cert_status=cert_status,
        digest_algorithm=status.md_algorithm,
        reasons=tuple(reasons),
    )


def _collect(reader: PdfFileReader) -> tuple[list[EmbeddedPdfSignature], list[tuple[str, str]]]:
    """The /Sig signatures in signing order, and (field, error) for unreadable ones.

    Unlike pyHanko's collector, one signature with a corrupt /Contents does not
    make the whole document unreadable.
    """
    good, broken = [], []
    for name, _value, field in enumerate_sig_fields(reader, filled_status=True):
        try:
            embedded = EmbeddedPdfSignature(reader, field, name)
            if embedded.sig_object_type != "/Sig":
                continue  # document timestamps are not seals
        except _VENDOR_ERRORS as exc:
            broken.append((name, str(exc)))
            continue
        good.append(embedded)
    good.sort(key=lambda emb: emb.signed_revision)
    return good, broken


def _broken(name: str, seal_name: str, why: str) -> SignatureReport:
    return SignatureReport(
        field_name=name,
        valid=False,
        integrity=Integrity.BROKEN,
        coverage=Coverage.UNKNOWN,
        modification_level="",
        docmdp="",
        signer_subject="",
        cert_serial="",
        seal_name=seal_name,
        signing_time=None,
        timestamp=TimestampReport(present=False),
        cert_status=CertStatus.UNKNOWN,
        digest_algorithm="",
        reasons=(f"signature {name}: the signature cannot be read or validated: {why}",),
    )


def _cert_status(
    status: PdfSignatureStatus,
    chain: Sequence[x509.Certificate],
    crls: Sequence[x509.CertificateRevocationList],
    moment: datetime,
) -> tuple[CertStatus, str]:
    indic = status.trust_problem_indic
    name = str(indic.standard_name) if indic is not None else ""
    details = status.revocation_details
    if details is not None:
        return CertStatus.REVOKED, f"revoked on {details.revocation_date.isoformat()}"
    revoked = find_revocation(chain, crls, moment)
    if revoked is not None:
        when = revoked.revoked_at.isoformat()
        return CertStatus.REVOKED, f"{revoked.subject} (serial {revoked.serial}) revoked on {when}"
    if "REVOKED" in name:
        return CertStatus.REVOKED, name
    if status.trusted:
        return CertStatus.TRUSTED, ""
    if name == "NO_CERTIFICATE_CHAIN_FOUND":
        return CertStatus.UNTRUSTED_ROOT, "no path to a given trust root"
    stale = expired_in(chain, moment)
    if stale is not None or name in ("EXPIRED", "NOT_YET_VALID", "OUT_OF_BOUNDS_NO_POE"):
        who = stale.subject.rfc4514_string() if stale is not None else "a chain certificate"
        return CertStatus.EXPIRED, f"{who} is not valid at {moment.isoformat()}"
    return CertStatus.UNKNOWN, name or "certificate path validation failed"


def _coverage(status: PdfSignatureStatus, max_level: ModificationLevel) -> Coverage:
    if status.coverage == SignatureCoverageLevel.ENTIRE_FILE:
        return Coverage.WHOLE_DOCUMENT
    level = status.modification_level
    if status.docmdp_ok and level is not None and level <= max_level:
        return Coverage.ALLOWED_UPDATES
    return Coverage.DISALLOWED_UPDATES


def _timestamp(status: PdfSignatureStatus) -> TimestampReport:
    ts = status.timestamp_validity
    if ts is None:
        return TimestampReport(present=False)
    return TimestampReport(
        present=True,
        valid=ts.intact and ts.valid and ts.trusted,
        time=ts.timestamp,
        tsa_subject=to_crypto(ts.signing_cert).subject.rfc4514_string(),
    )


def _sig_name(embedded: EmbeddedPdfSignature) -> str:
    try:
        value = embedded.sig_object.get("/Name")
    except _VENDOR_ERRORS:
        return ""
    return str(value) if value is not None else ""


def _license_identifier(reader: PdfFileReader, revision: int | None) -> str:
    """The /Subject of the document information (signing.render writes the identifier)
    as it was when the first seal was applied: later /Info updates are allowed
    (LTA level) and so must not be able to change which license this is."""
    if revision is None:
        return ""
    try:
        info = reader.get_historical_resolver(revision).trailer_view.get("/Info")
        subject = info.get_object().get("/Subject") if info is not None else None
    except _VENDOR_ERRORS:
        return ""
    return str(subject) if subject is not None else ""


def _dss_crls(reader: PdfFileReader) -> list[x509.CertificateRevocationList]:
    try:
        dss = DocumentSecurityStore.read_dss(reader)
    except NoDSSFoundError:
        return []
    except _VENDOR_ERRORS as exc:
        log.warning("unreadable DSS ignored: %s", exc)
        return []
    crls = []
    for ref in dss.crls:
        try:
            crls.append(x509.load_der_x509_crl(ref.get_object().data))
        except _VENDOR_ERRORS:
            continue
    return crls


def _context(
    reader: PdfFileReader, roots: list[asn1_x509.Certificate], kwargs: dict[str, object]
) -> ValidationContext:
    args = dict(kwargs, trust_roots=roots)
    try:
        return DocumentSecurityStore.read_dss(reader).as_validation_context(args)
    except NoDSSFoundError:
        return ValidationContext(**args)  # type: ignore[arg-type]
    except _VENDOR_ERRORS as exc:
        log.warning("unreadable DSS ignored: %s", exc)
        return ValidationContext(**args)  # type: ignore[arg-type]


def _asn1(roots: Sequence[x509.Certificate]) -> list[asn1_x509.Certificate]:
    return [asn1_x509.Certificate.load(der(r)) for r in roots]


def _failed(*reasons: str, readable: bool = True) -> PdfVerification:
    return PdfVerification(
        valid=False,
        intact=False,
        trusted=False,
        signer_subject="",
        signing_time=None,
        digest_algorithm="",
        covers_whole_document=False,
        reasons=reasons,
        readable=readable,
    )
