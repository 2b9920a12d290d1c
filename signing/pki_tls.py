"""TLS certificates of the development PKI: the hub <-> platform links over mutual TLS.

:func:`ensure_tls_material` issues, under ``<pki dir>/tls/``, a server
certificate for the simulated government platforms (``localhost`` and
``127.0.0.1``, extendedKeyUsage serverAuth) and a client certificate for the hub
(extendedKeyUsage clientAuth), plus the CA bundle both sides trust. It is
idempotent: existing files are reused, and a certificate is issued again when it
is missing, near its end of validity, no longer signed by its CA, no longer
matching its key, or issued for other names than asked for.

Issuer: a separate **TLS issuing CA** under the dev root, not the seal-issuing
intermediate. Seal verifiers trust the seal intermediate's chain for signatures,
so a TLS certificate issued by it would be one more certificate able to pass
for a seal issuer's product; and the TLS CA alone is the trust anchor of the
TLS links (``ca-bundle.pem`` holds only it, and both ends verify with
``VERIFY_X509_PARTIAL_CHAIN``), so no seal certificate of the same dev root can
ever authenticate a TLS connection. The server and client files hold the leaf
followed by the TLS CA, so a peer trusting only the dev root verifies them too.

Keys: the TLS CA key is encrypted with the dev PKI's passphrase (like the other
CA keys). The two leaf keys are **unencrypted** PEM, mode 0600, inside the dev
home's PKI directory (mode 0700): uvicorn and the hub's ``ssl`` context load
them directly, so no passphrase has to travel on a command line or through the
settings. They are dev-only keys, regenerated on demand and never committed.
Production TLS keys come from the platform operators, not from here.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from signing import pki_build
from signing.pki import ROOT_KEY, _load_key, _locked, _store_ca, _write_atomic, ensure_dev_pki

TLS_DIR = "tls"
TLS_CA_CERT = "tls-ca.pem"
TLS_CA_KEY = "tls-ca.key.pem"
CA_BUNDLE = "ca-bundle.pem"
SERVER_CERT = "server.pem"
SERVER_KEY = "server.key.pem"
CLIENT_CERT = "client.pem"
CLIENT_KEY = "client.key.pem"

DEFAULT_SERVER_NAMES = ("localhost", "127.0.0.1")
DEFAULT_CLIENT_NAME = "ehub hub client"

_TLS_CA_DAYS = 1825
_LEAF_DAYS = 365
#: A certificate with less than this left is issued again.
RENEW_BEFORE = dt.timedelta(days=30)


@dataclass(frozen=True)
class TlsMaterial:
    """Paths of the dev TLS files (all under ``<pki dir>/tls/``)."""

    ca_bundle: Path
    """The TLS issuing CA (PEM): what servers trust for client certificates and
    clients trust for server certificates."""
    server_cert: Path
    """Server certificate + TLS CA (PEM chain); SAN = the server names asked for."""
    server_key: Path
    """Server private key, unencrypted PEM, mode 0600."""
    client_cert: Path
    """The hub's client certificate + TLS CA (PEM chain)."""
    client_key: Path
    """The hub's client private key, unencrypted PEM, mode 0600."""


@dataclass(frozen=True)
class _Leaf:
    cert_name: str
    key_name: str
    common_name: str
    sans: tuple[str, ...]
    eku: x509.ObjectIdentifier


def ensure_tls_material(
    pki_dir: Path,
    *,
    server_names: Sequence[str] = DEFAULT_SERVER_NAMES,
    client_name: str = DEFAULT_CLIENT_NAME,
    passphrase: str | None = None,
    now: dt.datetime | None = None,
) -> TlsMaterial:
    """Create (or reuse) the TLS CA, server and client certificates of the dev PKI.

    ``pki_dir`` is the dev PKI's directory (created with :func:`ensure_dev_pki`
    if absent; ``passphrase`` as there). ``server_names`` are DNS names or IP
    addresses, all put in the server certificate's subjectAltName. ``now`` is
    the instant validity is judged at (default: the clock). Raises
    :class:`KeyAccessError` when the TLS CA key does not open with the
    passphrase in force.
    """
    if not server_names:
        raise ValueError("the server certificate needs at least one name")
    pki = ensure_dev_pki(Path(pki_dir), passphrase=passphrase)
    at = now or dt.datetime.now(dt.UTC)
    tls = pki.directory / TLS_DIR
    tls.mkdir(mode=0o700, exist_ok=True)
    tls.chmod(0o700)
    leaves = (
        _Leaf(SERVER_CERT, SERVER_KEY, server_names[0], tuple(server_names),
              ExtendedKeyUsageOID.SERVER_AUTH),
        _Leaf(CLIENT_CERT, CLIENT_KEY, client_name, (), ExtendedKeyUsageOID.CLIENT_AUTH),
    )  # fmt: skip
    with _locked(pki.directory):
        root = pki.root_cert()
        ca_cert, ca_key, new_ca = _ensure_tls_ca(pki.directory, tls, pki.passphrase, root, at)
        ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
        bundle = tls / CA_BUNDLE
        if not bundle.exists() or bundle.read_bytes() != ca_pem:
            _write_atomic(bundle, ca_pem, 0o644)
        for leaf in leaves:
            if new_ca or not _leaf_is_current(tls, leaf, ca_cert, at):
                _issue_leaf(tls, leaf, ca_cert, ca_key)
    return TlsMaterial(
        ca_bundle=bundle,
        server_cert=tls / SERVER_CERT,
        server_key=tls / SERVER_KEY,
        client_cert=tls / CLIENT_CERT,
        client_key=tls / CLIENT_KEY,
    )


def _ensure_tls_ca(
    pki_dir: Path, tls: Path, secret: str, root: x509.Certificate, at: dt.datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey, bool]:
    cert_path, key_path = tls / TLS_CA_CERT, tls / TLS_CA_KEY
    if cert_path.exists() and key_path.exists():
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = _load_key(key_path, secret)
        if _valid_at(cert, at) and _issued_by(cert, root) and _same_key(cert, key):
            return cert, key, False
    root_key = _load_key(pki_dir / ROOT_KEY, secret)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = pki_build.name(
        (NameOID.COUNTRY_NAME, "CN"),
        (NameOID.ORGANIZATION_NAME, _organization(root)),
        (NameOID.COMMON_NAME, "ehub Dev TLS Issuing CA"),
    )
    days_left = (root.not_valid_after_utc - dt.datetime.now(dt.UTC)).days
    cert = pki_build.ca_cert(
        subject,
        key,
        issuer=root.subject,
        issuer_key=root_key,
        path_length=0,
        days=max(1, min(_TLS_CA_DAYS, days_left)),
    )
    _store_ca(tls, (TLS_CA_CERT, TLS_CA_KEY), cert, key, secret)
    return cert, key, True


def _leaf_is_current(tls: Path, leaf: _Leaf, ca_cert: x509.Certificate, at: dt.datetime) -> bool:
    cert_path, key_path = tls / leaf.cert_name, tls / leaf.key_name
    if not (cert_path.exists() and key_path.exists()):
        return False
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())  # the first PEM: the leaf
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    except (ValueError, TypeError):
        return False
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        return False
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return (
        _valid_at(cert, at)
        and _issued_by(cert, ca_cert)
        and _same_key(cert, key)
        and [n.value for n in names] == [leaf.common_name]
        and _sans(cert) == set(map(_general_name, leaf.sans))
        and _ekus(cert) == [leaf.eku]
    )


def _issue_leaf(
    tls: Path, leaf: _Leaf, ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    not_before, not_after = pki_build.window(_LEAF_DAYS)
    builder = (
        x509.CertificateBuilder()
        .subject_name(
            pki_build.name(
                (NameOID.COUNTRY_NAME, "CN"),
                (NameOID.ORGANIZATION_NAME, _organization(ca_cert)),
                (NameOID.COMMON_NAME, leaf.common_name),
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(min(not_after, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_TLS_KEY_USAGE, critical=True)
        .add_extension(x509.ExtendedKeyUsage([leaf.eku]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if leaf.sans:
        san = x509.SubjectAlternativeName([_general_name(n) for n in leaf.sans])
        builder = builder.add_extension(san, critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    pem_key = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Key first: a crash between the two leaves a key that matches no certificate,
    # which the next run detects and replaces.
    _write_atomic(tls / leaf.key_name, pem_key, 0o600)
    chain = cert.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(
        serialization.Encoding.PEM
    )
    _write_atomic(tls / leaf.cert_name, chain, 0o644)


# ECDHE-ECDSA needs digitalSignature only; no nonRepudiation on a TLS key.
_TLS_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)


def _general_name(value: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(value))
    except ValueError:
        return x509.DNSName(value)


def _sans(cert: x509.Certificate) -> set[x509.GeneralName]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return set()
    return set(ext.value)


def _ekus(cert: x509.Certificate) -> list[x509.ObjectIdentifier]:
    try:
        return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return []


def _valid_at(cert: x509.Certificate, at: dt.datetime) -> bool:
    return cert.not_valid_before_utc <= at and at + RENEW_BEFORE < cert.not_valid_after_utc


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _same_key(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bool:
    def der(public: object) -> bytes:
        if not isinstance(public, ec.EllipticCurvePublicKey):
            return b""
        return public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    return der(cert.public_key()) == der(key.public_key())


def _organization(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return str(names[0].value) if names else "ehub development"
