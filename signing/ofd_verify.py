"""Verify the SM2 electronic seals of an OFD package (GB/T 38540 in GB/T 33190), offline.

:func:`verify_ofd` treats the package as untrusted input and returns an
:class:`OfdVerification` verdict; nothing is raised for a bad document. Checks,
in order, each failure recorded as an :class:`OfdProblem` with a typed reason
(:class:`OfdReason` for the package and OFD layer, :class:`signing.ses_verify.SesReason`
for the seal layer):

1. package: a ZIP with ``OFD.xml``, entry names that stay inside the package
   (no absolute paths, ``..``, backslashes), no duplicates or encryption,
   bounded sizes (:func:`signing.ofd_package.read_package`);
2. structure: ``OFD.xml`` → ``DocBody/Signatures`` → ``Signatures.xml`` →
   each ``Signature`` ``BaseLoc`` → ``Signature.xml`` → ``Seal/BaseLoc`` and
   ``SignedValue`` files exist and parse; at least one seal;
3. per seal: SignatureMethod is SM3withSM2 and CheckMethod is SM3; every
   ``Reference``'s ``CheckValue`` equals the recomputed SM3 of its file; every
   package file except ``Signatures.xml`` and the seals' own files is
   referenced (so a page or resource added after sealing is caught); the
   ``StampAnnot`` points to a page of the document;
4. the ``SES_Signature`` in ``SignedValue.dat`` with every check of STANDARDS.md
   §4 (:func:`signing.ses_verify.verify_signature` over the ``Signature.xml`` bytes:
   signature, signer certificate in the seal's list, trusted seal maker,
   maker's signature, seal validity window, certificate validity and key
   usage, dataHash); its ``propertyInfo`` names that ``Signature.xml``, its
   embedded seal equals ``Seal.esl``, its ``timeInfo`` equals
   ``SignatureDateTime``.

Only SM2 seals (``Type="Seal"``) are supported; a ``Type="Sign"`` entry is
reported as unsupported.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import enum
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from lxml import etree

from signing import ses_verify
from signing.ofd_package import OFD_ENTRY, OfdPackageError, parse_xml, q, read_package, resolve
from signing.ofd_seal import SIGNING_TIME_FORMAT
from signing.sm2 import OID_SM3, OID_SM3_WITH_SM2, sm3


class OfdReason(enum.Enum):
    """Why an OFD package or one of its seals is invalid (package and OFD layer)."""

    NOT_OFD = "not_ofd"
    UNSAFE_PACKAGE = "unsafe_package"
    MALFORMED_PART = "malformed_part"
    MISSING_PART = "missing_part"
    NO_SEAL = "no_seal"
    UNSUPPORTED_SIGNATURE_TYPE = "unsupported_signature_type"
    UNSUPPORTED_METHOD = "unsupported_method"
    CHECK_VALUE_MISMATCH = "check_value_mismatch"
    REFERENCE_MISSING = "reference_missing"
    UNPROTECTED_PART = "unprotected_part"
    STAMP_PAGE_UNKNOWN = "stamp_page_unknown"
    PROPERTY_INFO_MISMATCH = "property_info_mismatch"
    SEAL_FILE_MISMATCH = "seal_file_mismatch"
    SIGNING_TIME_MISMATCH = "signing_time_mismatch"
    LICENSE_NOT_VALID = "license_not_valid"


Reason = OfdReason | ses_verify.SesReason


@dataclass(frozen=True)
class OfdProblem:
    reason: Reason
    detail: str
    signature: str = ""
    """The ``Signature.xml`` entry concerned (empty: the whole package)."""

    def __str__(self) -> str:
        where = f"{self.signature}: " if self.signature else ""
        return f"{where}{self.reason.value}: {self.detail}"


@dataclass(frozen=True)
class OfdSealReport:
    """One seal of the document."""

    signature_entry: str
    seal_name: str = ""
    seal_id: str = ""
    signer_subject: str = ""
    signing_time: dt.datetime | None = None
    references: int = 0
    problems: tuple[OfdProblem, ...] = ()

    @property
    def valid(self) -> bool:
        return not self.problems

    @property
    def intact(self) -> bool:
        """No file, Signature.xml or signature value changed (trust aside)."""
        return not {p.reason for p in self.problems} & _INTEGRITY


_INTEGRITY = frozenset(
    {
        OfdReason.CHECK_VALUE_MISMATCH,
        OfdReason.REFERENCE_MISSING,
        OfdReason.UNPROTECTED_PART,
        OfdReason.SEAL_FILE_MISMATCH,
        ses_verify.SesReason.MALFORMED,
        ses_verify.SesReason.DATA_HASH_MISMATCH,
        ses_verify.SesReason.SIGNATURE_INVALID,
    }
)


@dataclass(frozen=True)
class OfdVerification:
    """The verdict of :func:`verify_ofd`."""

    readable: bool
    """False when the bytes are not a safe, parseable OFD package."""
    problems: tuple[OfdProblem, ...]
    seals: tuple[OfdSealReport, ...] = ()
    license_identifier: str = ""
    """ZZBS from ``DocInfo/CustomDatas`` (empty when absent)."""
    license_status: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return self.readable and not self.problems

    @property
    def reasons(self) -> list[str]:
        return [str(p) for p in self.problems]

    @property
    def reason_codes(self) -> frozenset[Reason]:
        return frozenset(p.reason for p in self.problems)


def _subject(cert_der: bytes) -> str:
    from asn1crypto import x509

    try:
        return str(x509.Certificate.load(cert_der).subject.human_friendly)
    except (ValueError, TypeError):
        return ""


def verify_ofd(
    ofd_bytes: bytes,
    trusted_seal_makers: Collection[bytes],
    *,
    license_status: Callable[[str], str | None] | None = None,
) -> OfdVerification:
    """Verify every seal of an OFD package against the trusted seal makers' DER certificates."""
    try:
        entries = read_package(ofd_bytes)
    except OfdPackageError as exc:
        code = OfdReason.UNSAFE_PACKAGE if exc.reason in ("unsafe", "too_large") else None
        reason = code or OfdReason.NOT_OFD
        return OfdVerification(False, (OfdProblem(reason, str(exc)),))
    try:
        return _verify(entries, trusted_seal_makers, license_status)
    except OfdPackageError as exc:
        reason = OfdReason.MALFORMED_PART if exc.reason == "bad_xml" else OfdReason.MISSING_PART
        return OfdVerification(False, (OfdProblem(reason, str(exc)),))


def _part(entries: dict[str, bytes], entry: str, what: str) -> etree._Element:
    if entry not in entries:
        raise OfdPackageError(f"{what} {entry} is not in the package", reason="missing")
    return parse_xml(entries[entry], entry)


def _verify(
    entries: dict[str, bytes],
    trusted: Collection[bytes],
    license_status: Callable[[str], str | None] | None,
) -> OfdVerification:
    root = _part(entries, OFD_ENTRY, "the root")
    body = root.find(q("DocBody"))
    if root.tag != q("OFD") or body is None:
        raise OfdPackageError("OFD.xml has no ofd:OFD/ofd:DocBody", reason="bad_xml")
    metadata = {
        str(el.get("Name")): el.text or ""
        for el in body.iterfind(f"{q('DocInfo')}/{q('CustomDatas')}/{q('CustomData')}")
    }
    identifier = metadata.get("ZZBS", "")
    doc_root = body.findtext(q("DocRoot")) or ""
    document = _part(entries, resolve(doc_root, OFD_ENTRY), "DocRoot")
    page_ids = {p.get("ID") for p in document.iterfind(f"{q('Pages')}/{q('Page')}")}

    problems: list[OfdProblem] = []
    seals: list[OfdSealReport] = []
    list_loc = body.findtext(q("Signatures"))
    signature_entries: list[tuple[str, str]] = []
    list_entry = ""
    if list_loc:
        list_entry = resolve(list_loc, OFD_ENTRY)
        listing = _part(entries, list_entry, "Signatures")
        for item in listing.iterfind(q("Signature")):
            sig_entry = resolve(item.get("BaseLoc") or "", list_entry)
            signature_entries.append((sig_entry, item.get("Type") or "Seal"))
    if not signature_entries:
        problems.append(OfdProblem(OfdReason.NO_SEAL, "the document carries no seal"))
    own_files = {e for e, _ in signature_entries}
    for sig_entry, _ in signature_entries:
        sig_root = _part(entries, sig_entry, "Signature")
        for loc in (
            sig_root.findtext(f"{q('SignedInfo')}/{q('Seal')}/{q('BaseLoc')}"),
            sig_root.findtext(q("SignedValue")),
        ):
            if loc:
                own_files.add(resolve(loc, sig_entry))
    for sig_entry, kind in signature_entries:
        report = _check_seal(entries, sig_entry, kind, trusted, page_ids, {list_entry} | own_files)
        seals.append(report)
        problems.extend(report.problems)

    status = None
    if license_status is not None and identifier:
        status = license_status(identifier)
        if status not in (None, "valid"):
            detail = f"license {identifier} is {status} in the hub register"
            problems.append(OfdProblem(OfdReason.LICENSE_NOT_VALID, detail))
    return OfdVerification(True, tuple(problems), tuple(seals), identifier, status, metadata)


def _check_seal(
    entries: dict[str, bytes],
    sig_entry: str,
    kind: str,
    trusted: Collection[bytes],
    page_ids: set[str | None],
    unsigned_files: set[str],
) -> OfdSealReport:
    problems: list[OfdProblem] = []

    def fail(reason: Reason, detail: str) -> None:
        problems.append(OfdProblem(reason, detail, sig_entry))

    if kind != "Seal":
        fail(OfdReason.UNSUPPORTED_SIGNATURE_TYPE, f"Type={kind!r}: only SM2 seals are supported")
        return OfdSealReport(sig_entry, problems=tuple(problems))
    root = _part(entries, sig_entry, "Signature")
    info = root.find(q("SignedInfo"))
    if info is None:
        raise OfdPackageError(f"{sig_entry} has no SignedInfo", reason="bad_xml")
    method = (info.findtext(q("SignatureMethod")) or "").strip()
    if method != OID_SM3_WITH_SM2:
        fail(OfdReason.UNSUPPORTED_METHOD, f"SignatureMethod {method!r} is not SM3withSM2")
    refs = info.find(q("References"))
    check = (refs.get("CheckMethod") or "").strip() if refs is not None else ""
    if check.upper() not in ("SM3", OID_SM3):
        fail(OfdReason.UNSUPPORTED_METHOD, f"CheckMethod {check!r} is not SM3")
    referenced: set[str] = set()
    count = 0
    for ref in refs.iterfind(q("Reference")) if refs is not None else ():
        count += 1
        try:
            target = resolve(ref.get("FileRef") or "", sig_entry)
        except OfdPackageError as exc:
            fail(OfdReason.REFERENCE_MISSING, str(exc))
            continue
        referenced.add(target)
        if target not in entries:
            fail(OfdReason.REFERENCE_MISSING, f"referenced file {target} is not in the package")
            continue
        try:
            expected = base64.b64decode(
                (ref.findtext(q("CheckValue")) or "").strip(), validate=True
            )
        except (binascii.Error, ValueError):
            expected = b""
        if expected != sm3(entries[target]):
            fail(OfdReason.CHECK_VALUE_MISMATCH, f"{target} changed after sealing")
    for name in sorted(set(entries) - referenced - unsigned_files):
        fail(OfdReason.UNPROTECTED_PART, f"{name} is not covered by the seal")
    annot = info.find(q("StampAnnot"))
    if annot is None or annot.get("PageRef") not in page_ids:
        fail(OfdReason.STAMP_PAGE_UNKNOWN, "StampAnnot does not point to a page of the document")

    value_loc = root.findtext(q("SignedValue")) or ""
    value_entry = resolve(value_loc, sig_entry)
    if value_entry not in entries:
        raise OfdPackageError(f"SignedValue {value_entry} is not in the package", reason="missing")
    result = ses_verify.verify_signature(
        entries[value_entry], signed_data=entries[sig_entry], trusted_seal_makers=trusted
    )
    for p in result.problems:
        fail(p.reason, p.detail)
    decoded = result.signature
    if decoded is None:
        return OfdSealReport(sig_entry, references=count, problems=tuple(problems))
    if decoded.property_info.lstrip("/") != sig_entry:
        fail(OfdReason.PROPERTY_INFO_MISMATCH, f"propertyInfo {decoded.property_info!r}")
    seal_loc = info.findtext(f"{q('Seal')}/{q('BaseLoc')}")
    if seal_loc:
        seal_entry = resolve(seal_loc, sig_entry)
        if entries.get(seal_entry) != decoded.seal_der:
            fail(OfdReason.SEAL_FILE_MISMATCH, f"{seal_entry} is not the seal that was signed")
    claimed = (info.findtext(q("SignatureDateTime")) or "").strip()
    if claimed != decoded.time_info.astimezone(dt.UTC).strftime(SIGNING_TIME_FORMAT):
        fail(OfdReason.SIGNING_TIME_MISMATCH, f"SignatureDateTime {claimed!r} is not timeInfo")
    return OfdSealReport(
        sig_entry,
        seal_name=decoded.seal.name,
        seal_id=decoded.seal.es_id,
        signer_subject=_subject(decoded.signer_cert),
        signing_time=decoded.time_info,
        references=count,
        problems=tuple(problems),
    )


__all__ = ["OfdProblem", "OfdReason", "OfdSealReport", "OfdVerification", "verify_ofd"]
