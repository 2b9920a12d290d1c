"""Certificate and CRL builders of the development PKI, and its service URLs.

Pure functions (no files): :mod:`signing.pki` stores what they build.

The dev PKI publishes one CRL per CA (``crl/root.crl`` signed by the root,
``crl/intermediate.crl`` signed by the seal-issuing intermediate) and a
timestamp authority, all under one loopback base URL chosen when the PKI is
created and stored in ``services.json``. The URL is fixed for the life of the
PKI directory because it is written into the certificates (CRL distribution
points), so certificates issued earlier keep pointing at the right place.

The CRL file itself is the record of revocations: revoking a certificate
re-signs the CRL with one more entry, and refreshing a CRL that is close to
its nextUpdate copies its entries into a new one.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from signing.errors import SigningError

SERVICES_FILE = "services.json"
CRL_DIR = "crl"
ROOT_CRL = "root.crl"
INTERMEDIATE_CRL = "intermediate.crl"
TSA_PATH = "/tsa"
LOOPBACK = "127.0.0.1"

#: A CRL is valid this long after it is (re)signed.
CRL_VALIDITY = dt.timedelta(days=30)
#: A CRL with less than this left before nextUpdate is re-signed when read.
CRL_REFRESH_MARGIN = dt.timedelta(days=15)
# Backdate notBefore so a slightly slow clock elsewhere does not reject the certs.
_BACKDATE = dt.timedelta(days=1)


@dataclass(frozen=True)
class ServiceUrls:
    """Where the PKI's revocation data and timestamp authority are served."""

    base_url: str
    """``http://127.0.0.1:<port>`` (no trailing slash)."""

    @property
    def root_crl(self) -> str:
        return f"{self.base_url}/{CRL_DIR}/{ROOT_CRL}"

    @property
    def intermediate_crl(self) -> str:
        return f"{self.base_url}/{CRL_DIR}/{INTERMEDIATE_CRL}"

    @property
    def tsa(self) -> str:
        return f"{self.base_url}{TSA_PATH}"

    @property
    def port(self) -> int:
        tail = self.base_url.rsplit(":", 1)[-1]
        return int(tail) if tail.isdigit() else 80


def free_loopback_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def read_service_urls(directory: Path) -> ServiceUrls | None:
    """The service URLs stored in a PKI directory, or ``None`` if not chosen yet."""
    path = directory / SERVICES_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        base = str(data["base_url"]).rstrip("/")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SigningError(f"cannot read the PKI service URLs from {path}: {exc}") from exc
    if not base.startswith(("http://", "https://")):
        raise SigningError(f"{path}: base_url must be an http(s) URL, got {base!r}")
    return ServiceUrls(base)


def services_json(urls: ServiceUrls) -> bytes:
    return (json.dumps({"base_url": urls.base_url}, indent=2) + "\n").encode("utf-8")


def distribution_point(url: str) -> x509.CRLDistributionPoints:
    return x509.CRLDistributionPoints(
        [
            x509.DistributionPoint(
                full_name=[x509.UniformResourceIdentifier(url)],
                relative_name=None,
                reasons=None,
                crl_issuer=None,
            )
        ]
    )


def load_crl(path: Path) -> x509.CertificateRevocationList | None:
    if not path.exists():
        return None
    try:
        return x509.load_der_x509_crl(path.read_bytes())
    except ValueError as exc:
        raise SigningError(f"cannot parse CRL {path}: {exc}") from exc


def crl_needs_refresh(
    crl: x509.CertificateRevocationList | None,
    issuer_cert: x509.Certificate,
    now: dt.datetime,
) -> bool:
    """True when ``crl`` is absent, signed by another key, or close to expiry."""
    if crl is None or crl.issuer != issuer_cert.subject:
        return True
    public_key = issuer_cert.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not crl.is_signature_valid(
        public_key
    ):
        return True
    next_update = crl.next_update_utc
    return next_update is None or next_update - now < CRL_REFRESH_MARGIN


def build_crl(
    issuer_cert: x509.Certificate,
    issuer_key: ec.EllipticCurvePrivateKey,
    previous: x509.CertificateRevocationList | None,
    *,
    add: x509.RevokedCertificate | None = None,
    now: dt.datetime,
) -> x509.CertificateRevocationList:
    """A new CRL of ``issuer_cert`` holding the entries of ``previous`` (if it
    is this issuer's) plus ``add``, with the next CRL number."""
    entries: list[x509.RevokedCertificate] = []
    number = 1
    if previous is not None and previous.issuer == issuer_cert.subject:
        entries.extend(previous)
        try:
            ext = previous.extensions.get_extension_for_class(x509.CRLNumber)
            number = ext.value.crl_number + 1
        except x509.ExtensionNotFound:
            pass
    if add is not None:
        entries.append(add)
    this_update = now.replace(microsecond=0) - dt.timedelta(minutes=5)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer_cert.subject)
        .last_update(this_update)
        .next_update(this_update + CRL_VALIDITY)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    for entry in entries:
        builder = builder.add_revoked_certificate(entry)
    return builder.sign(issuer_key, hashes.SHA256())


def revoked_entry(
    serial: int, when: dt.datetime, reason: x509.ReasonFlags | None
) -> x509.RevokedCertificate:
    builder = (
        x509.RevokedCertificateBuilder()
        .serial_number(serial)
        .revocation_date(when.replace(microsecond=0))
    )
    if reason is not None and reason != x509.ReasonFlags.unspecified:
        builder = builder.add_extension(x509.CRLReason(reason), critical=False)
    return builder.build()


def crl_der(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(Encoding.DER)


def name(*pairs: tuple[x509.ObjectIdentifier, str]) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in pairs])


def window(days: int) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - _BACKDATE
    return start, start + dt.timedelta(days=days)


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=not ca,  # nonRepudiation
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def ca_cert(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    *,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    path_length: int,
    days: int,
    crl_url: str | None = None,
) -> x509.Certificate:
    not_before, not_after = window(days)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    if crl_url is not None:
        builder = builder.add_extension(distribution_point(crl_url), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def end_entity_cert(
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
    *,
    issuer_cert: x509.Certificate,
    issuer_key: ec.EllipticCurvePrivateKey,
    days: int,
    crl_url: str | None,
    eku: x509.ObjectIdentifier | None = None,
) -> x509.Certificate:
    """A signing certificate (digitalSignature + nonRepudiation), optionally with
    one critical extendedKeyUsage, never outliving its issuer."""
    not_before, not_after = window(days)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(min(not_after, issuer_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([eku]), critical=True)
    if crl_url is not None:
        builder = builder.add_extension(distribution_point(crl_url), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())
