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
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from signing.errors import KeyAccessError, SigningError

PASSPHRASE_ENV = "EHUB_SEAL_PASSPHRASE"

ROOT_CERT = "root.pem"
ROOT_KEY = "root.key.pem"
INTERMEDIATE_CERT = "intermediate.pem"
INTERMEDIATE_KEY = "intermediate.key.pem"
SEAL_P12 = "seal.p12"
PASSPHRASE_FILE = "seal.pass"
SEALS_DIR = "seals"
_LOCK_FILE = ".lock"

# A structurally valid USCC (GB 32100 check character and GB 11714
# organization-code check digit both correct) for the default test department.
DEV_DEPARTMENT_USCC = "11370000MB1234562A"

_ROOT_DAYS = 3650
_INTERMEDIATE_DAYS = 1825
_SEAL_DAYS = 730
# Backdate notBefore so a slightly slow clock elsewhere does not reject the certs.
_BACKDATE = dt.timedelta(days=1)


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

    def root_cert(self) -> x509.Certificate:
        """The root CA certificate."""
        return x509.load_pem_x509_certificate(self.root_cert_path.read_bytes())

    def intermediate_cert(self) -> x509.Certificate:
        """The seal-issuing intermediate CA certificate."""
        return x509.load_pem_x509_certificate(self.intermediate_cert_path.read_bytes())


def ensure_dev_pki(
    directory: Path,
    *,
    organization: str = "山东省电子证照签章测试CA",
    seal_organization: str = "山东省电子证照测试发证单位",
    seal_organization_uscc: str = DEV_DEPARTMENT_USCC,
    seal_subject_cn: str = "电子证照测试专用章",
    passphrase: str | None = None,
) -> DevPKI:
    """Create the development PKI in ``directory`` if absent; reuse it if present.

    ``organization`` is the O of both CA certificates; the seal certificate's
    subject is ``O=seal_organization, CN=seal_subject_cn`` with the
    department's USCC as organizationIdentifier. Raises :class:`KeyAccessError`
    when existing files cannot be opened with the passphrase in force.
    """
    directory = Path(directory)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    with _locked(directory):
        secret = _resolve_passphrase(directory, passphrase)
        root_cert, root_key, fresh = _ensure_root(directory, organization, secret)
        inter_cert, inter_key, fresh = _ensure_intermediate(
            directory, organization, secret, root_cert, root_key, force=fresh
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
            )
        else:
            _check_p12_opens(p12_path, secret)
    return DevPKI(
        directory=directory,
        root_cert_path=directory / ROOT_CERT,
        intermediate_cert_path=directory / INTERMEDIATE_CERT,
        intermediate_key_path=directory / INTERMEDIATE_KEY,
        seal_p12_path=p12_path,
        passphrase=secret,
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
        )
    return target


# --- internals -------------------------------------------------------------


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


def _name(*pairs: tuple[x509.ObjectIdentifier, str]) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in pairs])


def _window(days: int) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - _BACKDATE
    return start, start + dt.timedelta(days=days)


def _ca_cert(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    *,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    path_length: int,
    days: int,
) -> x509.Certificate:
    not_before, not_after = _window(days)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
        .sign(issuer_key, hashes.SHA256())
    )


def _store_ca(
    directory: Path,
    names: tuple[str, str],
    cert: x509.Certificate,
    key: ec.EllipticCurvePrivateKey,
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
    subject = _name(
        (NameOID.COUNTRY_NAME, "CN"),
        (NameOID.ORGANIZATION_NAME, organization),
        (NameOID.COMMON_NAME, "ehub Dev Root CA"),
    )
    cert = _ca_cert(subject, key, issuer=subject, issuer_key=key, path_length=1, days=_ROOT_DAYS)
    _store_ca(directory, (ROOT_CERT, ROOT_KEY), cert, key, secret)
    return cert, key, True


def _ensure_intermediate(
    directory: Path,
    organization: str,
    secret: str,
    root_cert: x509.Certificate,
    root_key: ec.EllipticCurvePrivateKey,
    *,
    force: bool,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey, bool]:
    cert_path, key_path = directory / INTERMEDIATE_CERT, directory / INTERMEDIATE_KEY
    if not force and cert_path.exists() and key_path.exists():
        key = _load_key(key_path, secret)
        return x509.load_pem_x509_certificate(cert_path.read_bytes()), key, False
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(
        (NameOID.COUNTRY_NAME, "CN"),
        (NameOID.ORGANIZATION_NAME, organization),
        (NameOID.COMMON_NAME, "ehub Dev Seal Issuing CA"),
    )
    cert = _ca_cert(
        subject,
        key,
        issuer=root_cert.subject,
        issuer_key=root_key,
        path_length=0,
        days=_INTERMEDIATE_DAYS,
    )
    _store_ca(directory, (INTERMEDIATE_CERT, INTERMEDIATE_KEY), cert, key, secret)
    return cert, key, True


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
) -> None:
    if not seal_name or not organization:
        raise SigningError("a seal certificate needs a department name and a seal name")
    key = ec.generate_private_key(ec.SECP256R1())
    not_before, not_after = _window(_SEAL_DAYS)
    subject = _name(
        (NameOID.COUNTRY_NAME, "CN"),
        (NameOID.ORGANIZATION_NAME, organization),
        # ETSI EN 319 412-1 semantics identifier: national trade register, China.
        (NameOID.ORGANIZATION_IDENTIFIER, f"NTRCN-{uscc}"),
        (NameOID.COMMON_NAME, seal_name),
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(min(not_after, issuer_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,  # nonRepudiation
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
        .sign(issuer_key, hashes.SHA256())
    )
    bundle = pkcs12.serialize_key_and_certificates(
        name=seal_name.encode("utf-8"),
        key=key,
        cert=cert,
        cas=[issuer_cert, root_cert],
        encryption_algorithm=_encryption(secret),
    )
    _write_atomic(target, bundle, 0o600)
