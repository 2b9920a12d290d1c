"""Development PKI for sealing: generated on first run, never committed.

:func:`ensure_dev_pki` creates, in one directory, a self-signed root CA, a
seal-issuing intermediate CA and one seal certificate whose private key lives
only inside a passphrase-protected PKCS#12 bundle (``seal.p12``). The CA keys
are kept as encrypted PEM (same passphrase, mode 0600) so that more seal
certificates can be issued later with :func:`issue_seal_certificate`.

The passphrase is, in order of precedence: the ``passphrase`` argument, the
``EHUB_SEAL_PASSPHRASE`` environment variable, or the ``seal.pass`` file
(mode 0600) which is generated randomly on first run.

Every file is written atomically (temporary file + rename) under an exclusive
lock, so a crash never leaves a half-written file and two processes starting
at once build one PKI. This module is for development and tests only: it must
not be used to hold production seal keys (those belong in an HSM / PKCS#11).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from signing import pki_build
from signing.errors import KeyAccessError, SigningError
from signing.pki_build import CRL_DIR, INTERMEDIATE_CRL, ROOT_CRL, SERVICES_FILE, ServiceUrls

PASSPHRASE_ENV = "EHUB_SEAL_PASSPHRASE"

ROOT_CERT = "root.pem"
ROOT_KEY = "root.key.pem"
INTERMEDIATE_CERT = "intermediate.pem"
INTERMEDIATE_KEY = "intermediate.key.pem"
SEAL_P12 = "seal.p12"
PASSPHRASE_FILE = "seal.pass"
SEALS_DIR = "seals"
TSA_CERT = "tsa.pem"
TSA_KEY = "tsa.key.pem"
_LOCK_FILE = ".lock"

# A structurally valid USCC (GB 32100 check character and GB 11714
# organization-code check digit both correct) for the default test department.
DEV_DEPARTMENT_USCC = "11370000MB1234562A"

_ROOT_DAYS = 3650
_INTERMEDIATE_DAYS = 1825
_SEAL_DAYS = 730
_TSA_DAYS = 1825


@dataclass(frozen=True)
class DevPKI:
    """Paths of a development PKI and the passphrase protecting its keys."""

    directory: Path
    """Directory holding every file of the PKI."""
    root_cert_path: Path
    """Self-signed root CA certificate (PEM); the trust anchor for verifiers."""
    intermediate_cert_path: Path
    """Seal-issuing intermediate CA certificate (PEM)."""
    intermediate_key_path: Path
    """Intermediate CA private key, encrypted PEM (mode 0600)."""
    seal_p12_path: Path
    """PKCS#12 bundle: seal key, seal certificate, intermediate and root."""
    passphrase: str = field(repr=False)
    """Passphrase of the PKCS#12 bundle and of the encrypted CA keys."""
    services: ServiceUrls | None = None
    """Loopback URLs of the CRLs and the TSA (``None`` only for a DevPKI built
    by hand; :func:`ensure_dev_pki` always sets it)."""

    @property
    def tsa_cert_path(self) -> Path:
        """Timestamp authority certificate (PEM), issued by the root."""
        return self.directory / TSA_CERT

    @property
    def tsa_key_path(self) -> Path:
        """Timestamp authority RSA key, encrypted PEM (mode 0600)."""
        return self.directory / TSA_KEY

    @property
    def root_crl_path(self) -> Path:
        return self.directory / CRL_DIR / ROOT_CRL

    @property
    def intermediate_crl_path(self) -> Path:
        return self.directory / CRL_DIR / INTERMEDIATE_CRL

    @property
    def tsa_url(self) -> str:
        """URL of the RFC 3161 timestamp authority (served by signing.pki_services)."""
        return self.service_urls().tsa

    def service_urls(self) -> ServiceUrls:
        """:attr:`services`, or :class:`SigningError` for a DevPKI built without them."""
        if self.services is None:
            raise SigningError(f"the PKI in {self.directory} has no service URLs")
        return self.services

    def root_cert(self) -> x509.Certificate:
        """The root CA certificate."""
        return x509.load_pem_x509_certificate(self.root_cert_path.read_bytes())

    def intermediate_cert(self) -> x509.Certificate:
        """The seal-issuing intermediate CA certificate."""
        return x509.load_pem_x509_certificate(self.intermediate_cert_path.read_bytes())

    def tsa_cert(self) -> x509.Certificate:
        """The timestamp authority certificate."""
        return x509.load_pem_x509_certificate(self.tsa_cert_path.read_bytes())


def ensure_dev_pki(
    directory: Path,
    *,
    organization: str = "山东省电子证照签章测试CA",
    seal_organization: str = "山东省电子证照测试发证单位",
    seal_organization_uscc: str = DEV_DEPARTMENT_USCC,
    seal_subject_cn: str = "电子证照测试专用章",
    passphrase: str | None = None,
    service_url: str | None = None,
) -> DevPKI:
    """Create the development PKI in ``directory`` if absent; reuse it if present.

    ``organization`` is the O of both CA certificates; the seal certificate's
    subject is ``O=seal_organization, CN=seal_subject_cn`` with the
    department's USCC as organizationIdentifier. Besides the CAs and the seal,
    the PKI holds a timestamp-authority certificate (issued by the root), one
    CRL per CA and the base URL they are served at (``services.json``):
    ``service_url`` when given on creation, else ``http://127.0.0.1:<a free
    port>``; it is kept for the life of the directory because certificates
    carry it in their CRL distribution points. Raises :class:`KeyAccessError`
    when existing files cannot be opened with the passphrase in force.
    """
    directory = Path(directory)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    with _locked(directory):
        secret = _resolve_passphrase(directory, passphrase)
        urls = _ensure_service_urls(directory, service_url)
        root_cert, root_key, new_root = _ensure_root(directory, organization, secret)
        inter_cert, inter_key, fresh = _ensure_intermediate(
            directory, organization, secret, root_cert, root_key, urls, force=new_root
        )
        p12_path = directory / SEAL_P12
        if fresh or not p12_path.exists():
            _issue_p12(
                p12_path,
                secret,
                inter_cert,
                inter_key,
                root_cert,
                organization=seal_organization,
                uscc=seal_organization_uscc,
                seal_name=seal_subject_cn,
                crl_url=urls.intermediate_crl,
            )
        else:
            _check_p12_opens(p12_path, secret)
        _ensure_tsa(directory, organization, secret, root_cert, root_key, urls, force=new_root)
        _refresh_crls(directory, (root_cert, root_key), (inter_cert, inter_key))
    return DevPKI(
        directory=directory,
        root_cert_path=directory / ROOT_CERT,
        intermediate_cert_path=directory / INTERMEDIATE_CERT,
        intermediate_key_path=directory / INTERMEDIATE_KEY,
        seal_p12_path=p12_path,
        passphrase=secret,
        services=urls,
    )


def issue_seal_certificate(
    pki: DevPKI, department_name: str, department_uscc: str, seal_name: str
) -> Path:
    """Issue a seal certificate for a department and return its new PKCS#12 path.

    The bundle is protected by ``pki.passphrase`` and stored under
    ``<pki dir>/seals/``; the name is derived from the USCC and the seal name,
    so asking twice for the same seal returns the existing bundle.
    """
    seals = pki.directory / SEALS_DIR
    seals.mkdir(mode=0o700, exist_ok=True)
    tag = hashlib.sha256(seal_name.encode("utf-8")).hexdigest()[:12]
    target = seals / f"{department_uscc}-{tag}.p12"
    with _locked(pki.directory):
        if target.exists():
            _check_p12_opens(target, pki.passphrase)
            return target
        inter_key = _load_key(pki.intermediate_key_path, pki.passphrase)
        _issue_p12(
            target,
            pki.passphrase,
            pki.intermediate_cert(),
            inter_key,
            pki.root_cert(),
            organization=department_name,
            uscc=department_uscc,
            seal_name=seal_name,
            crl_url=pki.services.intermediate_crl if pki.services else None,
        )
    return target


def _ensure_service_urls(directory: Path, given: str | None) -> ServiceUrls:
    stored = pki_build.read_service_urls(directory)
    if stored is not None:
        return stored
    base = (given or f"http://{pki_build.LOOPBACK}:{pki_build.free_loopback_port()}").rstrip("/")
    urls = ServiceUrls(base)
    _write_atomic(directory / SERVICES_FILE, pki_build.services_json(urls), 0o644)
    return urls


_CAPair = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]


def _refresh_crls(directory: Path, root: _CAPair, inter: _CAPair) -> None:
    now = dt.datetime.now(dt.UTC)
    (directory / CRL_DIR).mkdir(mode=0o755, exist_ok=True)
    for name, (cert, key) in ((ROOT_CRL, root), (INTERMEDIATE_CRL, inter)):
        path = directory / CRL_DIR / name
        previous = pki_build.load_crl(path)
        if pki_build.crl_needs_refresh(previous, cert, now):
            crl = pki_build.build_crl(cert, key, previous, now=now)
            _write_atomic(path, pki_build.crl_der(crl), 0o644)


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    fd = os.open(directory / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # exact mode regardless of umask
        os.write(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _resolve_passphrase(directory: Path, given: str | None) -> str:
    if given:
        return given
    from_env = os.environ.get(PASSPHRASE_ENV)
    if from_env:
        return from_env
    path = directory / PASSPHRASE_FILE
    if path.exists():
        text = path.read_text(encoding="utf-8").strip()
        if not text:
            raise KeyAccessError(f"passphrase file {path} is empty")
        return text
    secret = secrets.token_urlsafe(32)
    _write_atomic(path, secret.encode("utf-8") + b"\n", 0o600)
    return secret


def _encryption(secret: str) -> serialization.KeySerializationEncryption:
    return serialization.BestAvailableEncryption(secret.encode("utf-8"))


def _load_key(path: Path, secret: str) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), secret.encode("utf-8"))
    except (OSError, ValueError, TypeError) as exc:
        raise KeyAccessError(
            f"cannot open CA key {path} with the passphrase in force "
            f"(argument, ${PASSPHRASE_ENV} or {PASSPHRASE_FILE})"
        ) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise KeyAccessError(f"CA key {path} is not an EC key")
    return key


def _check_p12_opens(path: Path, secret: str) -> None:
    try:
        key, cert, _ = pkcs12.load_key_and_certificates(path.read_bytes(), secret.encode("utf-8"))
    except (OSError, ValueError) as exc:
        raise KeyAccessError(
            f"cannot open {path} with the passphrase in force "
            f"(argument, ${PASSPHRASE_ENV} or {PASSPHRASE_FILE})"
        ) from exc
    if key is None or cert is None:
        raise KeyAccessError(f"{path} holds no private key and certificate")


def _store_ca(
    directory: Path,
    names: tuple[str, str],
    cert: x509.Certificate,
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
    secret: str,
) -> None:
    cert_name, key_name = names
    # Key first: a crash after it leaves no certificate, so the pair is regenerated.
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, _encryption(secret)
    )
    _write_atomic(directory / key_name, pem_key, 0o600)
    _write_atomic(directory / cert_name, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _ensure_root(
    directory: Path, organization: str, secret: str
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey, bool]:
    cert_path, key_path = directory / ROOT_CERT, directory / ROOT_KEY
    if cert_path.exists() and key_path.exists():
        key = _load_key(key_path, secret)
        return x509.load_pem_x509_certificate(cert_path.read_bytes()), key, False
    key = ec.generate_private_key(ec.SECP256R1())
    subject = pki_build.name(
        (NameOID.COUNTRY_NAME, "CN"),
        (NameOID.ORGANIZATION_NAME, organization),
        (NameOID.COMMON_NAME, "ehub Dev Root CA"),
    )
    cert = pki_build.ca_cert(
        subject, key, issuer=subject, issuer_key=key, path_length=1, days=_ROOT_DAYS
    )
    _store_ca(directory, (ROOT_CERT, ROOT_KEY), cert, key, secret)
    return cert, key, True


def _ensure_intermediate(
    directory: Path,
    organization: str,
    secret: str,
    root_cert: x509.Certificate,
    root_key: ec.EllipticCurvePrivateKey,
    urls: ServiceUrls,
    *,
    force: bool,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey, bool]:
    cert_path, key_path = directory / INTERMEDIATE_CERT, directory / INTERMEDIATE_KEY
    if not force and cert_path.exists() and key_path.exists():
        key = _load_key(key_path, secret)
        return x509.load_pem_x509_certificate(cert_path.read_bytes()), key, False
    key = ec.generate_private_key(ec.SECP256R1())
    subject = pki_build.name(
        (NameOID.COUNTRY_NAME, "CN"),
        (NameOID.ORGANIZATION_NAME, organization),
        (NameOID.COMMON_NAME, "ehub Dev Seal Issuing CA"),
    )
    cert = pki_build.ca_cert(
        subject,
        key,
        issuer=root_cert.subject,
        issuer_key=root_key,
        path_length=0,
        days=_INTERMEDIATE_DAYS,
        crl_url=urls.root_crl,
    )
    _store_ca(directory, (INTERMEDIATE_CERT, INTERMEDIATE_KEY), cert, key, secret)
    return cert, key, True


def _ensure_tsa(
    directory: Path,
    organization: str,
    secret: str,
    root_cert: x509.Certificate,
    root_key: ec.EllipticCurvePrivateKey,
    urls: ServiceUrls,
    *,
    force: bool,
) -> None:
    cert_path, key_path = directory / TSA_CERT, directory / TSA_KEY
    if not force and cert_path.exists() and key_path.exists():
        try:
            serialization.load_pem_private_key(key_path.read_bytes(), secret.encode("utf-8"))
        except (ValueError, TypeError) as exc:
            raise KeyAccessError(f"cannot open TSA key {key_path} with the passphrase") from exc
        return
    # RSA: pyHanko's token builder (used by signing.pki_services) signs with RSA only.
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = pki_build.name(
        (NameOID.COUNTRY_NAME, "CN"),
        (NameOID.ORGANIZATION_NAME, organization),
        (NameOID.COMMON_NAME, "ehub Dev Timestamp Authority"),
    )
    cert = pki_build.end_entity_cert(
        subject,
        key.public_key(),
        issuer_cert=root_cert,
        issuer_key=root_key,
        days=_TSA_DAYS,
        crl_url=urls.root_crl,
        # RFC 3161 section 2.3: timeStamping is the only EKU, and critical.
        eku=ExtendedKeyUsageOID.TIME_STAMPING,
    )
    _store_ca(directory, (TSA_CERT, TSA_KEY), cert, key, secret)


def _issue_p12(
    target: Path,
    secret: str,
    issuer_cert: x509.Certificate,
    issuer_key: ec.EllipticCurvePrivateKey,
    root_cert: x509.Certificate,
    *,
    organization: str,
    uscc: str,
    seal_name: str,
    crl_url: str | None,
) -> None:
    if not seal_name or not organization:
        raise SigningError("a seal certificate needs a department name and a seal name")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = pki_build.name(
        (NameOID.COUNTRY_NAME, "CN"),
        (NameOID.ORGANIZATION_NAME, organization),
        # ETSI EN 319 412-1 semantics identifier: national trade register, China.
        (NameOID.ORGANIZATION_IDENTIFIER, f"NTRCN-{uscc}"),
        (NameOID.COMMON_NAME, seal_name),
    )
    cert = pki_build.end_entity_cert(
        subject,
        key.public_key(),
        issuer_cert=issuer_cert,
        issuer_key=issuer_key,
        days=_SEAL_DAYS,
        crl_url=crl_url,
    )
    bundle = pkcs12.serialize_key_and_certificates(
        name=seal_name.encode("utf-8"),
        key=key,
        cert=cert,
        cas=[issuer_cert, root_cert],
        encryption_algorithm=_encryption(secret),
    )
    _write_atomic(target, bundle, 0o600)
