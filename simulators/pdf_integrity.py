"""Cryptographic integrity of a PDF's PAdES signatures, as the provincial platform
simulator checks it: no trust decision (whose key it is, revocation), only that
every signature verifies over what it covers.

**One signature over the whole file** (exactly one ``/ByteRange``, covering
every byte but its ``/Contents`` hex string: what a sealing system sends) is
checked directly, without parsing the PDF's object graph
(:func:`whole_file_problem`):

- the gap of the range is exactly a hex string, holding a CMS SignedData with
  one signer whose certificate is in it;
- the signed attributes hold the content type ``id-data`` and the message
  digest of the two ranges (the digest algorithm the signer names);
- a signing-certificate attribute (ESS v2 or v1), when present, names that
  certificate by its hash (and issuer and serial, when given);
- the signature value verifies over the DER of the signed attributes with the
  certificate's public key (ECDSA or RSA PKCS#1 v1.5).

These are the checks of pyHanko's ``validate_sig_integrity`` plus whole-file
coverage (stricter than pyHanko's "entire revision"). Any other shape (several
signatures, an incremental update after the signature, RSA-PSS, a range that
is not the whole file) goes through pyHanko's reader (:func:`reader_problem`).
The direct path costs a fraction of a millisecond where the reader's parse
costs ~7 ms; ``tests/simulators/test_provincial_integrity.py`` shows both give
the same verdicts, tampered documents included.
"""

from __future__ import annotations

import hashlib
import io
import re
from typing import Any

_BYTERANGE = re.compile(rb"/ByteRange\s*\[\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*\]")
_HEX = re.compile(rb"<([0-9A-Fa-f\s]*)>")
_HASHES = ("sha256", "sha384", "sha512", "sha224", "sha1", "sm3")


class OtherShape(Exception):
    """Not one signature over the whole file: pyHanko's reader decides."""


def integrity_problem(content: bytes) -> str | None:
    """What is wrong with the signatures of the PDF ``content``; None: all verify."""
    try:
        return whole_file_problem(content)
    except OtherShape:
        return reader_problem(content)


def whole_file_problem(content: bytes) -> str | None:
    """:func:`integrity_problem` of a document signed once over the whole file;
    raises :class:`OtherShape` for any other document."""
    ranges = _BYTERANGE.findall(content)
    if len(ranges) != 1:
        raise OtherShape
    start, first, hole_end, second = (int(x) for x in ranges[0])
    if start != 0 or not 0 < first < hole_end or hole_end + second != len(content):
        raise OtherShape
    hole = _HEX.fullmatch(content, first, hole_end)
    if hole is None:
        return "the signature's /ByteRange gap is not exactly its /Contents hex string"
    try:
        from asn1crypto import cms

        der = bytes.fromhex(hole.group(1).decode("ascii"))
        signed = cms.ContentInfo.load(der, strict=False)  # the zero padding ignored
        if signed["content_type"].native != "signed_data":
            return "the signature's /Contents is not CMS SignedData"
        data = signed["content"]
        if len(data["signer_infos"]) != 1:
            return f"the signature has {len(data['signer_infos'])} signer infos, expected 1"
        info = data["signer_infos"][0]
        signed_attrs = info["signed_attrs"].dump()  # as received, before any is decoded
        cert = _signer_cert(data, info)
        if cert is None:
            return "the signer's certificate is not in the signature"
        algorithm = info["digest_algorithm"]["algorithm"].native
        if algorithm not in _HASHES:
            raise OtherShape
        digest = hashlib.new(algorithm)
        digest.update(memoryview(content)[:first])
        digest.update(memoryview(content)[hole_end:])
        return _signer_problem(info, signed_attrs, cert, algorithm, digest.digest())
    except OtherShape:
        raise
    except Exception as exc:  # any parse/crypto failure is a bad signature to a platform
        return f"signature cannot be verified: {type(exc).__name__}: {exc}"


def _signer_problem(
    info: Any, signed_attrs: bytes, cert: tuple[Any, bytes], algorithm: str, digest: bytes
) -> str | None:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

    attrs = info["signed_attrs"]
    if not attrs:
        return "the signature has no signed attributes"
    found: dict[str, Any] = {}
    for attr in attrs:
        name = attr["type"].native
        if name in found or len(attr["values"]) != 1:
            return f"signed attribute {name} is repeated or not single-valued"
        found[name] = attr["values"][0]
    if "content_type" not in found or found["content_type"].native != "data":
        return "the content-type attribute is not id-data"
    if "message_digest" not in found or found["message_digest"].native != digest:
        return "the message digest does not match the signed byte ranges"
    problem = _certid_problem(found, cert)
    if problem:
        return problem
    key = x509.load_der_x509_certificate(cert[1]).public_key()
    signed = b"\x31" + signed_attrs[1:]  # signed as a SET OF, not as [0] IMPLICIT
    value = info["signature"].native
    scheme = info["signature_algorithm"]["algorithm"].native
    hash_ = getattr(hashes, algorithm.upper())()
    try:
        if isinstance(key, ec.EllipticCurvePublicKey) and "ecdsa" in scheme:
            key.verify(value, signed, ec.ECDSA(hash_))
        elif isinstance(key, rsa.RSAPublicKey) and scheme in (
            "rsassa_pkcs1v15",
            f"{algorithm}_rsa",
        ):
            key.verify(value, signed, padding.PKCS1v15(), hash_)
        else:
            raise OtherShape
    except InvalidSignature:
        return "the signature value does not verify with the signer's certificate"
    return None


def _certid_problem(found: dict[str, Any], signer: tuple[Any, bytes]) -> str | None:
    """The signing-certificate attribute (ESS v2, else v1), when present, names ``cert``."""
    if "signing_certificate_v2" in found:
        ids, default = found["signing_certificate_v2"]["certs"], "sha256"
    elif "signing_certificate" in found:
        ids, default = found["signing_certificate"]["certs"], "sha1"
    else:
        return None
    if not len(ids):
        return "the signing-certificate attribute names no certificate"
    first = ids[0]
    algorithm = default
    if "hash_algorithm" in first:  # ESS v2 only
        algorithm = first["hash_algorithm"]["algorithm"].native
    if algorithm not in _HASHES:
        raise OtherShape
    cert, der = signer
    if hashlib.new(algorithm, der).digest() != first["cert_hash"].native:
        return "the signing-certificate attribute names another certificate"
    named = first["issuer_serial"]
    if named.native is not None:
        if named["serial_number"].native != cert.serial_number:
            return "the signing-certificate attribute names another serial number"
        issuers = [g.chosen.untag() for g in named["issuer"] if g.name == "directory_name"]
        if not any(_same_name(n, cert.issuer) for n in issuers):
            return "the signing-certificate attribute names another issuer"
    return None


def _same_name(a: Any, b: Any) -> bool:
    """X.500 names equal: as encoded, else by X.500 matching (costly string preparation)."""
    return bool(a.dump() == b.dump() or a == b)


def _signer_cert(data: Any, info: Any) -> tuple[Any, bytes] | None:
    """The certificate the signer info names by issuer and serial number, with its DER
    as received."""
    sid = info["sid"]
    if sid.name != "issuer_and_serial_number":
        raise OtherShape
    wanted = sid.chosen
    issuer = wanted["issuer"]
    issuer.dump()  # encoded as received, before any comparison decodes it
    serial = wanted["serial_number"].native
    certs = [(c.chosen, c.chosen.dump()) for c in data["certificates"] or ()
             if c.name == "certificate"]  # fmt: skip
    return next(((c, der) for c, der in certs
                 if c.serial_number == serial and _same_name(c.issuer, issuer)), None)  # fmt: skip


def reader_problem(content: bytes) -> str | None:
    """:func:`integrity_problem` through pyHanko's PDF reader (any document shape)."""
    try:
        from pyhanko.pdf_utils.reader import PdfFileReader
        from pyhanko.sign.validation.generic_cms import validate_sig_integrity
        from pyhanko.sign.validation.status import SignatureCoverageLevel

        sigs = PdfFileReader(io.BytesIO(content), strict=False).embedded_signatures
        if not sigs:
            return "no embedded signature field could be parsed"
        for sig in sigs:
            digest = sig.compute_digest()
            coverage = sig.evaluate_signature_coverage()
            intact, valid = validate_sig_integrity(sig.signer_info, sig.signer_cert, "data", digest)
            if not (intact and valid):
                return f"signature {sig.field_name!r}: intact={intact} valid={valid}"
            if coverage < SignatureCoverageLevel.ENTIRE_REVISION:
                return f"signature {sig.field_name!r} covers only {coverage.name}"
    except Exception as exc:  # any parse/crypto failure is a bad signature to a platform
        return f"signature cannot be verified: {type(exc).__name__}: {exc}"
    return None
