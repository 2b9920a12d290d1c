"""Helpers for the verification tests: CRLs, an NSS database for pdfsig, xmlsec1.

Everything is generated at run time from the session's throw-away PKI.
"""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from signing.pki import DevPKI


def seal_cert(pki: DevPKI) -> x509.Certificate:
    _, cert, _ = pkcs12.load_key_and_certificates(
        pki.seal_p12_path.read_bytes(), pki.passphrase.encode()
    )
    assert cert is not None
    return cert


def revoking_crl(pki: DevPKI, *serials: int) -> x509.CertificateRevocationList:
    """A CRL of ``pki``'s intermediate CA revoking ``serials`` an hour ago."""
    key = serialization.load_pem_private_key(
        pki.intermediate_key_path.read_bytes(), pki.passphrase.encode()
    )
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    now = datetime.now(UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(pki.intermediate_cert().subject)
        .last_update(now - timedelta(hours=2))
        .next_update(now + timedelta(days=7))
        .add_extension(x509.CRLNumber(1), critical=False)
    )
    for serial in serials:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(now - timedelta(hours=1))
            .build()
        )
    return builder.sign(key, hashes.SHA256())


def nss_db(directory: Path, root: Path | None) -> str:
    """An NSS database trusting only ``root`` (or nothing) for S/MIME, the usage
    pdfsig checks, so results never depend on ~/.pki."""
    directory.mkdir()
    db = f"sql:{directory}"
    subprocess.run(
        ["certutil", "-N", "--empty-password", "-d", db], check=True, capture_output=True
    )
    if root is not None:
        # "C" in the second trust slot: a trusted CA for email signing ("C,," is SSL only).
        subprocess.run(
            ["certutil", "-A", "-n", "ehub-root", "-t", ",C,", "-i", str(root), "-d", db],
            check=True,
            capture_output=True,
        )
    return db


def pdfsig(pdf: Path, db: str) -> str:
    # pdfsig exits non-zero for some invalid signatures; the report is what matters.
    run = subprocess.run(
        ["pdfsig", "-nssdir", db, str(pdf)], capture_output=True, text=True, check=False
    )
    return run.stdout + run.stderr


def xmlsec_verify(xml: Path, trusted: Path, untrusted: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "xmlsec1",
            "--verify",
            "--trusted-pem",
            str(trusted),
            "--untrusted-pem",
            str(untrusted),
            str(xml),
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def dev_tsa(pki: DevPKI, fixed: datetime) -> Any:
    """An in-process RFC 3161 TSA (pyHanko's) with a timeStamping certificate from ``pki``."""
    from asn1crypto import keys as asn1_keys
    from asn1crypto import x509 as asn1_x509
    from pyhanko.sign.timestamps.dummy_client import DummyTimeStamper
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    issuer_key = serialization.load_pem_private_key(
        pki.intermediate_key_path.read_bytes(), pki.passphrase.encode()
    )
    assert isinstance(issuer_key, ec.EllipticCurvePrivateKey)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # pyHanko's is RSA-only
    now = datetime.now(UTC)
    issuer = pki.intermediate_cert()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "ehub test TSA")]))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.TIME_STAMPING]), critical=True
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
        .sign(issuer_key, hashes.SHA256())
    )

    def asn1(c: x509.Certificate) -> asn1_x509.Certificate:
        return asn1_x509.Certificate.load(c.public_bytes(serialization.Encoding.DER))

    pkcs8 = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return DummyTimeStamper(
        tsa_cert=asn1(cert),
        tsa_key=asn1_keys.PrivateKeyInfo.load(pkcs8),
        certs_to_embed=SimpleCertificateStore.from_certs([asn1(issuer)]),
        fixed_dt=fixed,
    )
