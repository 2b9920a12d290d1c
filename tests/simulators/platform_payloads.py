"""Payload builders for the case, catalog and seal batch endpoints (provincial and national)."""

from __future__ import annotations

import base64
import copy
import functools
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from simulators.checks import make_uscc
from tests.simulators.payloads import ISSUER, TOKEN, license_json

AGENCY = make_uscc("11", "370602", "MB001234")
DEPARTMENT = make_uscc("11", "370602", "MB005678")
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


def case_json(serial: str = "0001", bbh: int = 1, **changes: Any) -> dict[str, Any]:
    """A completed, granted case record (canonical codes) of county 370602."""
    case: dict[str, Any] = {
        "BJBH": f"{AGENCY}337011700201120240506{serial}",
        "SSBM": f"{AGENCY}3370117002011",
        "SXMC": "食品经营许可",
        "SSJG": "烟台市芝罘区行政审批服务局",
        "SSJGDM": AGENCY,
        "XZQHDM": "370602",
        "BJLX": "2",
        "SQRLX": "1",
        "SQRMC": "烟台鑫源商贸有限公司",
        "SQRZJHM": ISSUER,
        "SQRZJLX": "001",
        "SBQD": "window",
        "BJZT": "completed",
        "SBSJ": "2024-05-06T09:00:00+08:00",
        "SLSJ": "2024-05-06T09:30:00+08:00",
        "SPSJ": "2024-05-08T10:00:00+08:00",
        "BJSJ": "2024-05-08T16:00:00+08:00",
        "CNBJSX": 5,
        "FDBJSX": 20,
        "BJJG": "granted",
        "JGZZBS": [],
        "HCP": "5",
        "BBH": bbh,
        "lineage": {
            "source": "ycsl",
            "source_key": serial,
            "source_version": "2024-05-08 16:00:00",
            "content_hash": hashlib.sha256(serial.encode()).hexdigest(),
        },
    }
    case.update(changes)
    return case


def case_item(key: str, case: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"idempotency_key": key, "case": copy.deepcopy(case or case_json())}


def sealed_license(serial: str = "2024000001", bbh: int = 1, **changes: Any) -> dict[str, Any]:
    seal = {"ZZQZR": "烟台市芝罘区市场监督管理局", "ZZQZSJ": "2024-05-06T08:00:00Z",
            "ZZQZMC": "电子证照专用章"}  # fmt: skip
    return license_json(serial, bbh, **{"QZ": [seal], **changes})


def catalog_item(
    key: str, lic: dict[str, Any] | None = None, doc: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "idempotency_key": key,
        "license": copy.deepcopy(lic if lic is not None else sealed_license()),
        "document": doc or {"format": "pdf", "sha256": hashlib.sha256(b"x").hexdigest(),
                            "size": 1234},
    }  # fmt: skip


@functools.lru_cache(maxsize=4)
def certificate(name: str = "seal one") -> tuple[str, str, str, str, str]:
    """(PEM, SHA-256 hex, serial hex, not_before, not_after) of a throw-away self-signed cert."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    start = datetime(2024, 1, 1, tzinfo=UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=730))
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    return (pem, cert.fingerprint(hashes.SHA256()).hex(), format(cert.serial_number, "X"),
            start.isoformat(), (start + timedelta(days=730)).isoformat())  # fmt: skip


def registration(es_id: str = "370602-MB0056780-01", cert_name: str = "seal one") -> dict[str, Any]:
    """A seal registration shaped like ``ehub.seal_registration.export_registration``."""
    pem, sha, serial, not_before, not_after = certificate(cert_name)
    return {
        "format": "ehub.seal-registration",
        "format_version": 1,
        "seal": {
            "esID": es_id,
            "name": "烟台市芝罘区市场监督管理局电子证照专用章",
            "type": 1,
            "type_name": "单位印章",
            "seal_type": "电子证照专用章",
            "license_types": ["11100000000013338W001"],
            "cross_level": False,
            "createDate": "2024-01-01T00:00:00+00:00",
            "validStart": not_before,
            "validEnd": not_after,
            "status": "active",
            "status_reason": None,
        },
        "department": {"name": "烟台市芝罘区市场监督管理局", "uscc": DEPARTMENT,
                       "division": "370602"},
        "certificate": {
            "certListType": 1,
            "serial": serial,
            "subject": f"CN={cert_name}",
            "issuer": f"CN={cert_name}",
            "not_before": not_before,
            "not_after": not_after,
            "sha256": sha,
            "pem": pem,
            "chain_pem": "",
        },
        "picture": {"type": "PNG", "width_mm": 42, "height_mm": 42,
                    "sha256": hashlib.sha256(PNG).hexdigest(),
                    "data_base64": base64.b64encode(PNG).decode()},
        "registration": {"registration_no": None, "registered_at": None},
    }  # fmt: skip


def seal_item(key: str, reg: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"idempotency_key": key, "registration": copy.deepcopy(reg or registration())}
