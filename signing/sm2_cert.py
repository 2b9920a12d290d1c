"""SM2 X.509 certificates (GM/T 0015) for the seal maker and the seal signers.

``cryptography`` cannot sign with SM2, so certificates are assembled with
``asn1crypto`` and the TBSCertificate is signed by :mod:`signing.sm2`
(SM3withSM2, OID ``1.2.156.10197.1.501``, default distinguishing ID). The
subject public key is the DER SubjectPublicKeyInfo OpenSSL writes
(id-ecPublicKey with the SM2 curve ``1.2.156.10197.1.301``).

:func:`make_dev_sm2_pki` builds a throw-away pair for development and tests: a
self-signed seal maker (制章人, the seal-issuing authority) and one signer
certificate it issues. Keys stay in memory; nothing is written. This module is
not a CA for production: real seal maker and signer keys live in an HSM and
their certificates come from the national e-government CA.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from asn1crypto import x509

from signing.errors import VerificationError
from signing.sm2 import OID_SM3_WITH_SM2, SM2PrivateKey, SM2PublicKey, Sm2Signer

SIGNER_KEY_USAGE = frozenset({"digital_signature", "non_repudiation"})
MAKER_KEY_USAGE = frozenset({"digital_signature", "non_repudiation", "key_cert_sign", "crl_sign"})


def _time(value: dt.datetime) -> x509.Time:
    if value.tzinfo is None:
        raise ValueError("certificate times must be timezone-aware")
    value = value.astimezone(dt.UTC).replace(microsecond=0)
    # RFC 5280 §4.1.2.5: UTCTime up to 2049, GeneralizedTime from 2050.
    return x509.Time({"utc_time" if value.year < 2050 else "general_time": value})


def _key_id(spki_der: bytes) -> bytes:
    # RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits (an identifier, not security).
    bits = x509.PublicKeyInfo.load(spki_der)["public_key"].contents[1:]
    return hashlib.sha1(bits, usedforsecurity=False).digest()


def issue_certificate(
    *,
    subject: dict[str, str],
    subject_key: SM2PublicKey,
    issuer_key: Sm2Signer,
    not_before: dt.datetime,
    not_after: dt.datetime,
    issuer_cert_der: bytes | None = None,
    ca: bool = False,
    key_usage: frozenset[str] = SIGNER_KEY_USAGE,
    serial: int | None = None,
) -> bytes:
    """A DER X.509 v3 certificate for ``subject_key`` signed with SM3withSM2.

    ``subject`` maps asn1crypto name attributes (``common_name``,
    ``organization_name``, ``country_name``...) to values. Without
    ``issuer_cert_der`` the certificate is self-signed (``issuer_key`` must then
    be the subject's own key).
    """
    spki_der = subject_key.to_der()
    subject_name = x509.Name.build(subject, use_printable=False)
    if issuer_cert_der is None:
        issuer_name = subject_name
        issuer_spki = spki_der
    else:
        issuer = x509.Certificate.load(issuer_cert_der)
        issuer_name = issuer.subject
        issuer_spki = issuer.public_key.dump()
    algorithm = x509.SignedDigestAlgorithm({"algorithm": OID_SM3_WITH_SM2})
    extensions = [
        {
            "extn_id": "basic_constraints",
            "critical": True,
            "extn_value": {"ca": ca, "path_len_constraint": 0 if ca else None},
        },
        {"extn_id": "key_usage", "critical": True, "extn_value": set(key_usage)},
        {"extn_id": "key_identifier", "critical": False, "extn_value": _key_id(spki_der)},
        {
            "extn_id": "authority_key_identifier",
            "critical": False,
            "extn_value": {"key_identifier": _key_id(issuer_spki)},
        },
    ]
    tbs = x509.TbsCertificate(
        {
            "version": "v3",
            "serial_number": serial if serial is not None else secrets.randbits(63) + 1,
            "signature": algorithm,
            "issuer": issuer_name,
            "validity": {"not_before": _time(not_before), "not_after": _time(not_after)},
            "subject": subject_name,
            "subject_public_key_info": x509.PublicKeyInfo.load(spki_der),
            "extensions": extensions,
        }
    )
    signature = issuer_key.sign(tbs.dump())
    cert = x509.Certificate(
        {"tbs_certificate": tbs, "signature_algorithm": algorithm, "signature_value": signature}
    )
    return bytes(cert.dump())


def certificate_public_key(cert_der: bytes) -> SM2PublicKey:
    """The SM2 public key of a DER certificate (raises if not SM2 or not a certificate)."""
    try:
        cert = x509.Certificate.load(cert_der)
        spki = cert.public_key.dump()
    except (ValueError, TypeError) as exc:
        raise VerificationError("not a DER X.509 certificate") from exc
    return SM2PublicKey.from_der(spki)


def certificate_signed_by(cert_der: bytes, issuer_cert_der: bytes) -> bool:
    """Whether ``cert_der`` carries a valid SM3withSM2 signature by ``issuer_cert_der``'s key."""
    try:
        cert = x509.Certificate.load(cert_der)
        algorithm = cert["signature_algorithm"]["algorithm"].dotted
        tbs = cert["tbs_certificate"].dump()
        signature = bytes(cert["signature_value"].native)
    except (ValueError, TypeError):
        return False
    if algorithm != OID_SM3_WITH_SM2:
        return False
    return certificate_public_key(issuer_cert_der).verify(signature, tbs)


def to_pem(cert_der: bytes) -> bytes:
    """PEM ``CERTIFICATE`` armour of a DER certificate."""
    from asn1crypto import pem

    return bytes(pem.armor("CERTIFICATE", cert_der))


@dataclass(frozen=True)
class DevSm2Pki:
    """A development seal maker and one signer, keys in memory only."""

    maker_key: SM2PrivateKey
    """The seal maker's key: signs SESeal structures and the signer certificate."""
    maker_cert: bytes
    """The seal maker's self-signed DER certificate (the verifier's trust anchor)."""
    signer_key: SM2PrivateKey
    """The signer's key: signs SES_Signature structures."""
    signer_cert: bytes
    """The signer's DER certificate, issued by the seal maker."""


def make_dev_sm2_pki(
    not_before: dt.datetime,
    *,
    days: int = 3650,
    maker_name: str = "ehub dev seal maker",
    signer_name: str = "ehub dev seal signer",
) -> DevSm2Pki:
    """A fresh seal maker (self-signed) and a signer certificate valid for ``days``."""
    not_after = not_before + dt.timedelta(days=days)
    maker_key = SM2PrivateKey.generate()
    maker_cert = issue_certificate(
        subject={"country_name": "CN", "organization_name": "ehub", "common_name": maker_name},
        subject_key=maker_key.public_key(),
        issuer_key=maker_key,
        not_before=not_before,
        not_after=not_after,
        ca=True,
        key_usage=MAKER_KEY_USAGE,
    )
    signer_key = SM2PrivateKey.generate()
    signer_cert = issue_certificate(
        subject={"country_name": "CN", "organization_name": "ehub", "common_name": signer_name},
        subject_key=signer_key.public_key(),
        issuer_key=maker_key,
        issuer_cert_der=maker_cert,
        not_before=not_before,
        not_after=not_after,
    )
    return DevSm2Pki(maker_key, maker_cert, signer_key, signer_cert)


__all__ = [
    "MAKER_KEY_USAGE",
    "SIGNER_KEY_USAGE",
    "DevSm2Pki",
    "certificate_public_key",
    "certificate_signed_by",
    "issue_certificate",
    "make_dev_sm2_pki",
    "to_pem",
]
