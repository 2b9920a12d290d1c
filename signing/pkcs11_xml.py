"""XMLDSig seals with a key that stays in a PKCS#11 token.

signxml signs with a ``cryptography`` private key object. For the methods
:func:`signing.xmlsig.sign_license_xml` uses it calls
``key.sign(data, signature_algorithm=ec.ECDSA(hash))`` (ECDSA; it then reads
``key.key_size`` to turn the DER signature into r||s) or
``key.sign(data, padding=PKCS1v15(), algorithm=hash)`` (RSA), and
``key.public_key()`` only for a ``KeyValue``, which it omits when certificates
are given. :class:`TokenEcKey` and :class:`TokenRsaKey` implement the
``cryptography`` key interfaces by handing the data to a :class:`RawSigner`,
in practice :meth:`signing.pkcs11_sealer.Pkcs11Sealer.sign_raw`: the sealer's
session and lock, and pyHanko's mechanism for the key type. Everything that
would need the private key itself (``private_bytes``, ``private_numbers``,
ECDH ``exchange``, RSA ``decrypt``) raises :class:`KeyAccessError`.

Each signature from the token is checked against the certificate's public key
before it is returned, so a token key that does not match its certificate is
a :class:`KeyAccessError`, not a seal nobody can verify.

Get the material with :meth:`signing.pkcs11_sealer.Pkcs11Sealer.xml_material`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol, Self

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.padding import AsymmetricPadding, PKCS1v15
from cryptography.hazmat.primitives.asymmetric.utils import NoDigestInfo, Prehashed
from cryptography.utils import Buffer

from signing.errors import KeyAccessError

__all__ = ["RawSigner", "TokenEcKey", "TokenRsaKey", "issuing_chain", "token_key"]

# What a seal may be hashed with (SHA-1 and SHA-224 are not offered).
_DIGESTS: dict[type[hashes.HashAlgorithm], str] = {
    hashes.SHA256: "sha256",
    hashes.SHA384: "sha384",
    hashes.SHA512: "sha512",
}


class RawSigner(Protocol):
    """Signs with a key it does not reveal (a :class:`Pkcs11Sealer`, or a test fake)."""

    def sign_raw(self, data: bytes, digest_algorithm: str) -> bytes:
        """Hash ``data`` with ``digest_algorithm`` (``"sha256"``...) and sign it.

        Returns what ``cryptography`` would: a DER ECDSA-Sig-Value for an EC
        key, the PKCS#1 v1.5 signature for an RSA key.
        """
        ...


def token_key(signer: RawSigner, cert: x509.Certificate, name: str) -> TokenEcKey | TokenRsaKey:
    """The key object signxml signs with, for the token key certified by ``cert``.

    ``name`` identifies the key in messages (e.g. ``token/object``). Raises
    :class:`KeyAccessError` for a certificate whose key is neither EC nor RSA.
    """
    public = cert.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        return TokenEcKey(signer, public, name)
    if isinstance(public, rsa.RSAPublicKey):
        return TokenRsaKey(signer, public, name)
    raise KeyAccessError(
        f"seal key {name!r} is a {type(public).__name__}; XML seals need an EC or RSA key"
    )


def issuing_chain(
    cert: x509.Certificate, candidates: Iterable[x509.Certificate]
) -> list[x509.Certificate]:
    """The CA certificates from ``cert`` up towards a root, nearest first, without
    self-signed roots (as :func:`signing.xmlsig.load_seal_material` returns them).

    Each link is checked by signature, not just by name; certificates off the
    path are left out.
    """
    pool = [c for c in candidates if c.subject != c.issuer and c != cert]
    chain: list[x509.Certificate] = []
    current = cert
    while (issuer := _issuer_in(current, pool)) is not None:
        chain.append(issuer)
        pool.remove(issuer)
        current = issuer
    return chain


def _issuer_in(cert: x509.Certificate, pool: list[x509.Certificate]) -> x509.Certificate | None:
    for candidate in pool:
        if candidate.subject != cert.issuer:
            continue
        try:
            cert.verify_directly_issued_by(candidate)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return candidate
    return None


class _InToken:
    """What both token keys share: nothing leaves the token; copies are the key itself."""

    name: str

    def private_bytes(
        self,
        encoding: serialization.Encoding,
        format: serialization.PrivateFormat,
        encryption_algorithm: serialization.KeySerializationEncryption,
    ) -> bytes:
        raise _not_exportable(self.name)

    def __copy__(self) -> Self:
        return self  # immutable, like cryptography's own keys

    def __deepcopy__(self, memo: dict[Any, Any]) -> Self:
        return self


class TokenEcKey(_InToken, ec.EllipticCurvePrivateKey):
    """An EC private key in a token: signs (ECDSA, SHA-2) and nothing else."""

    def __init__(self, signer: RawSigner, public: ec.EllipticCurvePublicKey, name: str) -> None:
        self._signer = signer
        self._public = public
        self.name = name

    def __repr__(self) -> str:
        return f"TokenEcKey({self.name!r}, {self._public.curve.name})"

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public.curve

    @property
    def key_size(self) -> int:
        return self._public.curve.key_size

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    def sign(self, data: Buffer, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        if not isinstance(signature_algorithm, ec.ECDSA):
            raise UnsupportedAlgorithm(
                f"token key {self.name!r} signs with ECDSA only, "
                f"not {type(signature_algorithm).__name__}"
            )
        if signature_algorithm.deterministic_signing:
            raise UnsupportedAlgorithm(
                f"token key {self.name!r} cannot promise deterministic ECDSA (RFC 6979)"
            )
        message = bytes(data)
        signature = self._signer.sign_raw(
            message, _digest_name(signature_algorithm.algorithm, self.name)
        )
        try:
            self._public.verify(signature, message, signature_algorithm)
        except (InvalidSignature, ValueError) as exc:
            raise _mismatch(self.name) from exc
        return signature

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        raise KeyAccessError(f"token key {self.name!r} is a seal key: it signs, no ECDH")

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        raise _not_exportable(self.name)


class TokenRsaKey(_InToken, rsa.RSAPrivateKey):
    """An RSA private key in a token: signs (PKCS#1 v1.5, SHA-2) and nothing else."""

    def __init__(self, signer: RawSigner, public: rsa.RSAPublicKey, name: str) -> None:
        self._signer = signer
        self._public = public
        self.name = name

    def __repr__(self) -> str:
        return f"TokenRsaKey({self.name!r}, {self._public.key_size} bits)"

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def public_key(self) -> rsa.RSAPublicKey:
        return self._public

    def sign(
        self,
        data: bytes,
        padding: AsymmetricPadding,
        algorithm: Prehashed | hashes.HashAlgorithm | NoDigestInfo,
    ) -> bytes:
        if not isinstance(padding, PKCS1v15):
            # pyHanko's raw PKCS#11 mode (the sealer's) has no RSASSA-PSS.
            raise UnsupportedAlgorithm(
                f"token key {self.name!r} signs with PKCS#1 v1.5 padding only, "
                f"not {type(padding).__name__}"
            )
        digest = _digest_name(algorithm, self.name)
        assert isinstance(algorithm, hashes.HashAlgorithm)  # _digest_name checked it
        message = bytes(data)
        signature = self._signer.sign_raw(message, digest)
        try:
            self._public.verify(signature, message, padding, algorithm)
        except (InvalidSignature, ValueError) as exc:
            raise _mismatch(self.name) from exc
        return signature

    def decrypt(self, ciphertext: bytes, padding: AsymmetricPadding) -> bytes:
        raise KeyAccessError(f"token key {self.name!r} is a seal key: it signs, no decryption")

    def private_numbers(self) -> rsa.RSAPrivateNumbers:
        raise _not_exportable(self.name)


def _digest_name(algorithm: object, name: str) -> str:
    # Exact types: a Prehashed digest or an odd subclass is refused, not guessed at.
    digest = _DIGESTS.get(type(algorithm)) if isinstance(algorithm, hashes.HashAlgorithm) else None
    if digest is None:
        offered = ", ".join(sorted(_DIGESTS.values()))
        raise UnsupportedAlgorithm(
            f"token key {name!r} signs {offered} digests, not {type(algorithm).__name__}"
        )
    return digest


def _not_exportable(name: str) -> KeyAccessError:
    return KeyAccessError(f"the private key {name!r} stays in its PKCS#11 token: not exportable")


def _mismatch(name: str) -> KeyAccessError:
    return KeyAccessError(
        f"the token's signature with {name!r} does not verify with its certificate's "
        "public key: key and certificate on the token do not match"
    )
