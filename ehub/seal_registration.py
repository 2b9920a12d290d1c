"""The registration (备案) document of a seal, for the national platform.

Part of :mod:`ehub.seals` (re-exported there as ``export_registration``).
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from ehub.seal_image import DIAMETER_MM

if TYPE_CHECKING:
    from ehub.seals import Seal


def export_registration(seal: Seal, *, with_image: bool = True) -> dict[str, Any]:
    """The registration (备案) document of a seal for the national platform.

    The national platform's exact registration schema is *unconfirmed*; the
    fields follow GB/T 38540 ``SES_ESPropertyInfo`` / ``SES_ESPictrueInfo``
    (esID, type 1 = unit seal, name, certListType 1 = certificates, validStart,
    validEnd, picture type/size in mm) plus the department and the certificate's
    serial, issuer, validity and SHA-256 fingerprint.
    """
    cert = seal.certificate()
    image = Path(seal.image_path).read_bytes() if with_image and seal.image_path else None
    picture: dict[str, Any] = {
        "type": "PNG",
        "width_mm": DIAMETER_MM,
        "height_mm": DIAMETER_MM,
        "sha256": seal.image_sha256,
    }
    if image is not None:
        picture["data_base64"] = base64.b64encode(image).decode()
    return {
        "format": "ehub.seal-registration",
        "format_version": 1,
        "seal": {
            "esID": seal.code,
            "name": seal.name,
            "type": 1,
            "type_name": "单位印章",
            "seal_type": seal.seal_type,
            "license_types": list(seal.license_types),
            "cross_level": seal.cross_level,
            "createDate": seal.created_at.isoformat(),
            "validStart": seal.valid_from.isoformat(),
            "validEnd": seal.valid_until.isoformat(),
            "status": seal.status,
            "status_reason": seal.status_reason,
        },
        "department": {
            "name": seal.department,
            "uscc": seal.department_uscc,
            "division": seal.division,
        },
        "certificate": {
            "certListType": 1,
            "serial": format(cert.serial_number, "X"),
            "subject": cert.subject.rfc4514_string(),
            "issuer": cert.issuer.rfc4514_string(),
            "not_before": cert.not_valid_before_utc.isoformat(),
            "not_after": cert.not_valid_after_utc.isoformat(),
            "sha256": cert.fingerprint(hashes.SHA256()).hex(),
            "pem": cert.public_bytes(Encoding.PEM).decode(),
            "chain_pem": seal.chain_pem or "",
        },
        "picture": picture,
        "registration": {
            "registration_no": seal.registration_no,
            "registered_at": seal.registered_at.isoformat() if seal.registered_at else None,
        },
    }
