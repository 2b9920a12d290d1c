"""XMLDSig seals on the canonical license XML (enveloped, exclusive C14N).

:func:`sign_license_xml` appends one ``ds:Signature`` as the last child of the
root element: ``Reference URI=""`` (the whole document minus the signature),
transforms enveloped-signature + exclusive C14N, SHA-256 digest, ECDSA-SHA256
or RSA-SHA256 by key type, and the certificate chain (seal certificate first)
in ``KeyInfo/X509Data``. :func:`verify_license_xml` returns an
:class:`XmlVerification` verdict; like :func:`signing.verify.verify_pdf`, a
bad document is a verdict and only bad trust roots raise
:class:`signing.errors.VerificationError`.

Verification is in two steps so the reasons are precise: the signature is
first checked with the embedded seal certificate alone (integrity), then
again with signxml's chain validation against the given trust roots only
(trust), after expiry and the caller's CRLs are checked. Callers must use
:attr:`XmlVerification.signed_xml` (what was actually signed), never the input.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from lxml import etree
from signxml import (
    CanonicalizationMethod,
    DigestAlgorithm,
    InvalidCertificate,
    InvalidDigest,
    InvalidInput,
    InvalidSignature,
    SignatureConfiguration,
    SignatureConstructionMethod,
    SignatureMethod,
    VerifyResult,
    XMLSigner,
    XMLVerifier,
)
from signxml.util import X509CertChainVerifier

from ehub.errors import RecordError
from ehub.records_xml import parse_xml
from signing.certstatus import (
    CertStatus,
    TrustRoot,
    common_name,
    expired_in,
    find_revocation,
    load_roots,
    serial_hex,
)
from signing.errors import KeyAccessError, UnsealableDocument
from signing.verify import LicenseStatusLookup

log = logging.getLogger(__name__)
# signxml logs the canonical XML it signs or verifies at DEBUG: the whole license,
# holder names and ID numbers included. Never below WARNING.
logging.getLogger("signxml").setLevel(logging.WARNING)

DS_NS = "http://www.w3.org/2000/09/xmldsig#"
_SIGNATURE = f"{{{DS_NS}}}Signature"
_C14N = CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0
_ACCEPTED_METHODS = frozenset(
    {
        SignatureMethod.ECDSA_SHA256,
        SignatureMethod.ECDSA_SHA384,
        SignatureMethod.RSA_SHA256,
        SignatureMethod.RSA_SHA384,
    }
)
_ACCEPTED_DIGESTS = frozenset({DigestAlgorithm.SHA256, DigestAlgorithm.SHA384})

SealKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True, slots=True)
class XmlVerification:
    """Verdict on the enveloped XML signature of one document."""

    valid: bool
    """Intact, trusted, and (if asked) the license is valid in the register."""
    intact: bool
    """The signed content and SignedInfo still match the signature value."""
    cert_status: CertStatus
    signer_subject: str
    """RFC 4514 subject of the seal certificate ('' if none)."""
    cert_serial: str
    """Serial number of the seal certificate, upper-case hex ('' if none)."""
    seal_name: str
    """CN of the seal certificate."""
    reasons: tuple[str, ...] = ()
    """Why the document is not valid (empty when valid)."""
    readable: bool = True
    """False when the input is not well-formed XML (or is refused by the parser)."""
    signed_xml: bytes | None = None
    """What the signature covers, exclusive-C14N form without the signature
    (attributes sorted, so not byte-identical to the input; None unless intact)."""
    license_identifier: str = ""
    """ZZBS of a license document ('' if absent)."""
    license_status: str | None = None
    """The license's status from the ``license_status`` hook (None: not asked)."""

    @property
    def trusted(self) -> bool:
        return self.cert_status == CertStatus.TRUSTED


def load_seal_material(
    p12_path: Path, passphrase: str | bytes
) -> tuple[SealKey, x509.Certificate, list[x509.Certificate]]:
    """Key, seal certificate and issuing chain (without self-signed roots) from a PKCS#12."""
    secret = passphrase.encode("utf-8") if isinstance(passphrase, str) else passphrase
    try:
        key, cert, cas = pkcs12.load_key_and_certificates(Path(p12_path).read_bytes(), secret)
    except (OSError, ValueError) as exc:
        raise KeyAccessError(
            f"cannot open seal key store {p12_path}: unreadable, wrong passphrase or corrupt"
        ) from exc
    if cert is None or not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise KeyAccessError(f"seal key store {p12_path} lacks an EC/RSA key and certificate")
    chain = [c for c in cas if c.subject != c.issuer]
    return key, cert, chain


def sign_license_xml(
    xml_bytes: bytes,
    key: SealKey,
    cert: x509.Certificate,
    chain: Sequence[x509.Certificate] = (),
) -> bytes:
    """Return ``xml_bytes`` with an enveloped XMLDSig seal (UTF-8, with declaration).

    ``chain`` are the issuing CA certificates embedded after ``cert``. Raises
    :class:`UnsealableDocument` for malformed or already signed XML.
    """
    if isinstance(key, ec.EllipticCurvePrivateKey):
        method = SignatureMethod.ECDSA_SHA256
    elif isinstance(key, rsa.RSAPrivateKey):
        method = SignatureMethod.RSA_SHA256
    else:
        raise KeyAccessError(f"unsupported seal key type {type(key).__name__}")
    try:
        root = parse_xml(xml_bytes)
    except RecordError as exc:
        raise UnsealableDocument(f"cannot seal XML: {exc}") from exc
    if root.find(_SIGNATURE) is not None:
        raise UnsealableDocument("the XML already carries an enveloped signature")
    signer = XMLSigner(
        method=SignatureConstructionMethod.enveloped,
        signature_algorithm=method,
        digest_algorithm=DigestAlgorithm.SHA256,
        c14n_algorithm=_C14N,
    )
    try:
        signed = signer.sign(root, key=key, cert=[cert, *chain])
    except (InvalidInput, ValueError, TypeError) as exc:
        raise UnsealableDocument(f"cannot seal XML: {exc}") from exc
    return bytes(etree.tostring(signed, xml_declaration=True, encoding="UTF-8"))


def verify_license_xml(
    xml_bytes: bytes,
    trust_roots: Sequence[TrustRoot],
    *,
    validation_time: datetime | None = None,
    crls: Sequence[x509.CertificateRevocationList] = (),
    license_status: LicenseStatusLookup | None = None,
) -> XmlVerification:
    """Verify the enveloped signature of ``xml_bytes`` against ``trust_roots`` only."""
    roots = load_roots(trust_roots)
    moment = validation_time or datetime.now(UTC)
    try:
        root = parse_xml(xml_bytes)
    except RecordError as exc:
        return _failed(f"the XML cannot be read: {exc}", readable=False)
    signatures = root.findall(_SIGNATURE)
    if not signatures:
        return _failed("the XML carries no enveloped signature (ds:Signature under the root)")
    if len(signatures) > 1 or len(root.findall(f".//{_SIGNATURE}")) > 1:
        return _failed("the XML carries more than one signature; exactly one is accepted")
    signature = signatures[0]
    refs = signature.findall(f"{{{DS_NS}}}SignedInfo/{{{DS_NS}}}Reference")
    if len(refs) != 1 or refs[0].get("URI") != "":
        return _failed('the signature must have exactly one Reference with URI="" (whole document)')
    try:
        chain = [
            x509.load_der_x509_certificate(_b64(el.text or ""))
            for el in signature.iterfind(f".//{{{DS_NS}}}X509Data/{{{DS_NS}}}X509Certificate")
        ]
    except ValueError as exc:
        return _failed(f"the embedded certificate cannot be read: {exc}")
    if not chain:
        return _failed("the signature carries no X509Certificate")
    leaf = chain[0]
    who = (leaf.subject.rfc4514_string(), serial_hex(leaf.serial_number), common_name(leaf))
    data = bytes(etree.tostring(root))

    # 1. Integrity, with the embedded seal certificate alone.
    inside = max(leaf.not_valid_before_utc, min(moment, leaf.not_valid_after_utc))
    try:
        result = XMLVerifier().verify(data, x509_cert=leaf, expect_config=_config(inside))
    except (InvalidDigest, InvalidSignature) as exc:
        why = "the signed content was modified" if isinstance(exc, InvalidDigest) else str(exc)
        return _failed(f"the signature does not verify: {why}", who=who)
    except (InvalidInput, ValueError, TypeError, etree.LxmlError) as exc:
        return _failed(f"the signature is malformed: {exc}", who=who)
    if not isinstance(result, VerifyResult):  # expect_references=1 yields one result
        return _failed("the signature must have exactly one reference", who=who)
    signed = None
    if result.signed_xml is not None:
        signed = bytes(etree.tostring(result.signed_xml, xml_declaration=True, encoding="UTF-8"))

    # 2. Certificate status: revocation, expiry, then the path to a given root.
    status, why = _cert_status(data, chain, roots, crls, moment)
    reasons = [] if status == CertStatus.TRUSTED else [f"the seal certificate is {why}"]
    identifier = _identifier(root)
    lic_status = None
    if license_status is not None and identifier:
        lic_status = license_status(identifier)
        if lic_status is not None and lic_status != "valid":
            reasons.append(f"the license {identifier} is {lic_status} in the register")
    return XmlVerification(
        valid=not reasons,
        intact=True,
        cert_status=status,
        reasons=tuple(reasons),
        signed_xml=signed,
        license_identifier=identifier,
        license_status=lic_status,
        signer_subject=who[0],
        cert_serial=who[1],
        seal_name=who[2],
    )


def _cert_status(
    data: bytes,
    chain: list[x509.Certificate],
    roots: list[x509.Certificate],
    crls: Sequence[x509.CertificateRevocationList],
    moment: datetime,
) -> tuple[CertStatus, str]:
    revoked = find_revocation([*chain, *roots], crls, moment)
    if revoked is not None:
        when = revoked.revoked_at.isoformat()
        return CertStatus.REVOKED, f"revoked ({revoked.subject}, serial {revoked.serial}, {when})"
    stale = expired_in(chain, moment)
    if stale is not None:
        name = stale.subject.rfc4514_string()
        return CertStatus.EXPIRED, f"expired or not yet valid ({name} at {moment.isoformat()})"
    try:
        _RootsVerifier(roots).verify(data, expect_config=_config(moment))
    except InvalidCertificate as exc:
        # signxml retries the chain reversed, so its message names the wrong
        # certificate; the cause is logged, the reason stays plain.
        log.info("XML seal certificate path validation failed: %s", exc)
        return CertStatus.UNTRUSTED_ROOT, "not trusted: no path to a given trust root"
    except (InvalidSignature, InvalidInput, ValueError) as exc:
        return CertStatus.UNKNOWN, f"not verifiable: {exc}"
    return CertStatus.TRUSTED, ""


class _RootsChainVerifier(X509CertChainVerifier):  # type: ignore[misc]
    """signxml's chain verifier with an in-memory store of the given roots only."""

    def __init__(self, roots: list[x509.Certificate], **kwargs: Any) -> None:
        super().__init__(ca_pem_file="<in-memory trust roots>", **kwargs)
        self._roots = roots

    @property
    def store(self) -> x509.verification.Store:
        return x509.verification.Store(self._roots)


class _RootsVerifier(XMLVerifier):  # type: ignore[misc]
    def __init__(self, roots: list[x509.Certificate]) -> None:
        super().__init__()
        self._roots = roots

    def get_cert_chain_verifier(self, ca_pem_file: Any, ee_policy: Any, ca_policy: Any) -> Any:
        return _RootsChainVerifier(
            self._roots,
            verification_time=self._get_cert_verification_time(),
            ee_policy=ee_policy,
            ca_policy=ca_policy,
        )


def _config(moment: datetime) -> SignatureConfiguration:
    return SignatureConfiguration(
        location="./",  # enveloped: a child of the root element, nowhere else
        expect_references=1,
        signature_methods=_ACCEPTED_METHODS,
        digest_algorithms=_ACCEPTED_DIGESTS,
        verification_time=moment,
    )


def _b64(text: str) -> bytes:
    import base64
    import binascii

    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except binascii.Error as exc:
        raise ValueError(f"bad base64: {exc}") from exc


def _identifier(root: etree._Element) -> str:
    el = root.find(f"{{{root.nsmap.get(None, '')}}}ZZBS") if root.nsmap.get(None) else None
    return (el.text or "").strip() if el is not None else ""


def _failed(
    *reasons: str,
    readable: bool = True,
    who: tuple[str, str, str] = ("", "", ""),
) -> XmlVerification:
    return XmlVerification(
        valid=False,
        intact=False,
        cert_status=CertStatus.UNKNOWN,
        signer_subject=who[0],
        cert_serial=who[1],
        seal_name=who[2],
        reasons=reasons,
        readable=readable,
    )
