"""Payload builders for the provincial simulator tests: licenses, fake and real signed PDFs."""

from __future__ import annotations

import base64
import copy
import hashlib
import io
from datetime import UTC, datetime, timedelta
from typing import Any

from simulators.checks import make_uscc, mod37_36_check

ISSUER = make_uscc("11", "370602", "MB001234")
HOLDER = make_uscc("91", "370602", "MA3C1234")
TYPE_CODE = "11100000000013338W001"
TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FAKE_PDF = (
    b"%PDF-1.7\n1 0 obj\n<< /Type /Sig /Filter /Adobe.PPKLite /SubFilter /ETSI.CAdES.detached"
    b" /ByteRange [0 100 200 300] /Contents <00> >>\nendobj\n%%EOF\n"
)


def identifier(serial: str, *, issuer: str = ISSUER, version: str = "001") -> str:
    body = TYPE_CODE + issuer + serial + version
    return f"1.2.156.3005.2.{TYPE_CODE}.{issuer}.{serial}.{version}.{mod37_36_check(body)}"


def license_json(serial: str = "2024000001", bbh: int = 1, **changes: Any) -> dict[str, Any]:
    lic: dict[str, Any] = {
        "ZZBS": identifier(serial),
        "ZZLXDM": TYPE_CODE,
        "ZZMC": "营业执照",
        "ZZBH": "370602000123456",
        "ZZBFJG": "烟台市芝罘区市场监督管理局",
        "ZZBFJGDM": ISSUER,
        "ZZBFJGQHDM": "370602",
        "ZZBFRQ": "2023-05-06",
        "ZZYXQQSRQ": "2020-01-02",
        "ZZYXQJZRQ": None,
        "CZZT": "烟台鑫源商贸有限公司",
        "CZZTDM": HOLDER,
        "CZZTDMLXDM": "001",
        "CZZTDMLX": "统一社会信用代码",
        "CZZTQHDM": "370602",
        "ZZZT": "valid",
        "BBH": bbh,
        "KZ": {"KZ_FDDBR": "王伟", "KZ_ZCZB": "100万元人民币"},
        "GLBJBH": None,
        "lineage": {
            "source": "scjg",
            "source_key": "1",
            "source_version": "2024-01-01 08:00:03",
            "content_hash": hashlib.sha256(serial.encode()).hexdigest(),
        },
        "QZ": [],
    }
    lic.update(changes)
    return lic


def document(content: bytes = FAKE_PDF) -> dict[str, str]:
    return {
        "format": "pdf",
        "sha256": hashlib.sha256(content).hexdigest(),
        "content_b64": base64.b64encode(content).decode(),
    }


def item(key: str, lic: dict[str, Any] | None = None, doc: dict[str, str] | None = None) -> dict:
    return {
        "idempotency_key": key,
        "license": copy.deepcopy(lic if lic is not None else license_json()),
        "document": doc if doc is not None else document(),
    }


def make_signed_pdf(*, twice: bool = False) -> bytes:
    """A one-page PDF with a PAdES signature by a throw-away self-signed key (made at run
    time); ``twice``: signed again in an incremental update (two signatures)."""
    from asn1crypto import keys as asn1_keys
    from asn1crypto import x509 as asn1_x509
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import signers
    from pyhanko.sign.fields import SigSeedSubFilter
    from pyhanko_certvalidator.registry import SimpleCertificateStore
    from reportlab.pdfgen import canvas

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "simulator test seal")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    page = io.BytesIO()
    pdf = canvas.Canvas(page)
    pdf.drawString(100, 700, "business license")
    pdf.save()
    signer = signers.SimpleSigner(
        signing_cert=asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER)),
        signing_key=asn1_keys.PrivateKeyInfo.load(
            key.private_bytes(
                serialization.Encoding.DER,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        ),
        cert_registry=SimpleCertificateStore(),
    )
    data = page.getvalue()
    for field in ("Seal1", "Seal2") if twice else ("Seal1",):
        data = signers.sign_pdf(
            IncrementalPdfFileWriter(io.BytesIO(data)),
            signers.PdfSignatureMetadata(field_name=field, subfilter=SigSeedSubFilter.PADES),
            signer=signer,
        ).getvalue()
    return data
