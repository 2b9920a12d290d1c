"""Verification of GB/T 38540-2020 ``SES_Signature`` structures (STANDARDS.md §4).

:func:`verify_signature` decodes a signature (:mod:`signing.ses`) and runs every
check of the standard: versions and algorithms, the SM3 ``dataHash`` of the
protected bytes, the signer's SM2 signature over ``TBS_Sign``, the signer's
certificate (validity at the signing time, key usage, listed in the seal), the
seal maker (trusted, its signature over ``SES_SealInfo``) and the seal's
validity. It returns a :class:`SesVerification` listing each failed check as a
:class:`SesReason`: an invalid signature is a result, not an exception.

No I/O, no clock (the signing time is the signature's own ``timeInfo``).
"""

from __future__ import annotations

import enum
from collections.abc import Collection
from dataclasses import dataclass

from asn1crypto import x509

from signing.errors import KeyAccessError, SealFormatError
from signing.ses import (
    CERT_LIST_CERTS,
    SES_ID,
    SES_VERSION,
    DecodedSeal,
    DecodedSignature,
    decode_signature,
)
from signing.sm2 import OID_SM3, OID_SM3_WITH_SM2, SM2PublicKey, sm3

__all__ = ["SesProblem", "SesReason", "SesVerification", "verify_signature"]


class SesReason(enum.Enum):
    """Why a GB/T 38540 signature is invalid (one per failed check)."""

    MALFORMED = "malformed"
    UNSUPPORTED_VERSION = "unsupported_version"
    UNSUPPORTED_ALGORITHM = "unsupported_algorithm"
    DATA_HASH_MISMATCH = "data_hash_mismatch"
    SIGNER_CERT_UNUSABLE = "signer_cert_unusable"
    SIGNATURE_INVALID = "signature_invalid"
    SIGNER_NOT_IN_SEAL = "signer_not_in_seal"
    SIGNER_CERT_NOT_VALID = "signer_cert_not_valid_at_signing_time"
    SIGNER_KEY_USAGE = "signer_key_usage"
    SEAL_MAKER_UNTRUSTED = "seal_maker_untrusted"
    SEAL_SIGNATURE_INVALID = "seal_signature_invalid"
    SEAL_NOT_YET_VALID = "seal_not_yet_valid"
    SEAL_EXPIRED = "seal_expired"


@dataclass(frozen=True)
class SesProblem:
    reason: SesReason
    detail: str


@dataclass(frozen=True)
class SesVerification:
    """The outcome of :func:`verify_signature`."""

    problems: tuple[SesProblem, ...]
    """Every failed check, in the order checked; empty when valid."""
    signature: DecodedSignature | None
    """The decoded structure (``None`` if it could not be decoded)."""

    @property
    def valid(self) -> bool:
        return not self.problems

    @property
    def reasons(self) -> frozenset[SesReason]:
        return frozenset(p.reason for p in self.problems)


def _public_key(cert_der: bytes) -> tuple[x509.Certificate, SM2PublicKey]:
    cert = x509.Certificate.load(cert_der, strict=True)
    return cert, SM2PublicKey.from_der(cert.public_key.dump())


def _listed(seal: DecodedSeal, signer_cert: bytes) -> bool:
    if seal.cert_list_type == CERT_LIST_CERTS:
        return signer_cert in seal.certs
    digest = sm3(signer_cert)
    return any(
        alg.upper() in ("SM3", OID_SM3) and value == digest for alg, value in seal.cert_digests
    )


def verify_signature(
    signature_der: bytes, *, signed_data: bytes, trusted_seal_makers: Collection[bytes]
) -> SesVerification:
    """Check a DER ``SES_Signature`` against the bytes it protects.

    ``signed_data`` is what ``dataHash`` must be the SM3 of (for OFD, the
    ``Signature.xml`` bytes); ``trusted_seal_makers`` are the DER certificates
    of the seal makers whose seals are accepted. The signing time checked
    against the seal's and the certificate's validity is the signature's own
    ``timeInfo``.
    """
    try:
        sig = decode_signature(signature_der)
    except SealFormatError as exc:
        return SesVerification((SesProblem(SesReason.MALFORMED, str(exc)),), None)
    problems: list[SesProblem] = []

    def fail(reason: SesReason, detail: str) -> None:
        problems.append(SesProblem(reason, detail))

    seal = sig.seal
    if sig.version != SES_VERSION or seal.version != SES_VERSION or seal.header_id != SES_ID:
        fail(
            SesReason.UNSUPPORTED_VERSION,
            f"TBS_Sign version {sig.version}, seal header {seal.header_id!r} v{seal.version}; "
            f"only GB/T 38540 v{SES_VERSION} is supported",
        )
    if sig.data_hash != sm3(signed_data):
        fail(SesReason.DATA_HASH_MISMATCH, f"dataHash is not the SM3 of {sig.property_info}")

    if sig.signature_alg != OID_SM3_WITH_SM2:
        fail(SesReason.UNSUPPORTED_ALGORITHM, f"signatureAlgID {sig.signature_alg}")
    try:
        signer_cert, signer_key = _public_key(sig.signer_cert)
    except (ValueError, TypeError, KeyAccessError) as exc:
        fail(SesReason.SIGNER_CERT_UNUSABLE, f"signer certificate: {exc}")
    else:
        if sig.signature_alg == OID_SM3_WITH_SM2 and not signer_key.verify(
            sig.signature, sig.tbs_der
        ):
            fail(SesReason.SIGNATURE_INVALID, "the signature over TBS_Sign does not verify")
        if not signer_cert.not_valid_before <= sig.time_info <= signer_cert.not_valid_after:
            fail(
                SesReason.SIGNER_CERT_NOT_VALID,
                f"signing time {sig.time_info:%Y-%m-%dT%H:%M:%SZ} outside the signer "
                "certificate's validity",
            )
        usage = signer_cert.key_usage_value
        if usage is not None and not ({"digital_signature", "non_repudiation"} & set(usage.native)):
            fail(SesReason.SIGNER_KEY_USAGE, "signer key usage allows no signatures")
    if not _listed(seal, sig.signer_cert):
        fail(SesReason.SIGNER_NOT_IN_SEAL, f"signer certificate not in seal {seal.es_id}'s list")

    if seal.maker_cert not in trusted_seal_makers:
        fail(SesReason.SEAL_MAKER_UNTRUSTED, f"seal {seal.es_id} was not made by a trusted maker")
    if seal.sign_alg != OID_SM3_WITH_SM2:
        fail(SesReason.UNSUPPORTED_ALGORITHM, f"seal signAlgID {seal.sign_alg}")
    else:
        try:
            _, maker_key = _public_key(seal.maker_cert)
            maker_ok = maker_key.verify(seal.signed_value, seal.seal_info_der)
        except (ValueError, TypeError, KeyAccessError):
            maker_ok = False
        if not maker_ok:
            fail(SesReason.SEAL_SIGNATURE_INVALID, "the seal maker's signature does not verify")
    if sig.time_info < seal.valid_start:
        fail(SesReason.SEAL_NOT_YET_VALID, f"seal {seal.es_id} valid from {seal.valid_start}")
    if sig.time_info > seal.valid_end:
        fail(SesReason.SEAL_EXPIRED, f"seal {seal.es_id} expired at {seal.valid_end}")
    return SesVerification(tuple(problems), sig)
