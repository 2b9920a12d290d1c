"""Per-item checks of the national platform simulator, independent of the hub.

Catalog entries (``schemas/catalog_item.schema.json``): license metadata with
its seal information (QZ non-empty) and the fingerprint of its file; no file
content (the national platform indexes metadata, files stay at the province).
The GB/T 36904 identifier, issuer USCC, holder code and validity window checks
of the provincial platform apply, reported as ``BUSINESS_RULE`` with the
specific check named in the message.

Seal registrations (``schemas/seal_item.schema.json`` →
``seal_registration.schema.json``):

- ``SIGNATURE``: ``certificate.pem`` is not an X.509 certificate, or
  ``certificate.sha256`` is not the SHA-256 of its DER;
- ``BUSINESS_RULE``: ``seal.validEnd`` not after ``seal.validStart``;
  ``department.uscc`` not a valid 18-character USCC; ``picture.data_base64``
  whose SHA-256 differs from ``picture.sha256``.

The ``registration`` member (the platform's earlier answer, echoed back) is
left out of the idempotency fingerprint.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import uuid
from datetime import datetime
from typing import Any

from simulators.checks import uscc_is_valid
from simulators.platform_checks import (
    CST,
    Checked,
    ItemRejected,
    SchemaFile,
    canonical_json,
    fingerprint_of,
    validate_item,
)
from simulators.provincial_checks import license_rules


def check_catalog_item(key: str, item: dict[str, Any], *, schema: SchemaFile) -> Checked:
    """Schema, then the license rules (as BUSINESS_RULE)."""
    validate_item(schema, item)
    lic, doc = item["license"], item["document"]
    try:
        license_rules(lic)
    except ItemRejected as exc:
        raise ItemRejected("BUSINESS_RULE", f"{exc.code}: {exc.message}") from exc
    payload = canonical_json(lic)
    return Checked(
        idempotency_key=key,
        identifier=lic["ZZBS"],
        version=lic["BBH"],
        identity=f"{lic['ZZBS']}|{lic['BBH']}",
        fingerprint=fingerprint_of(payload, canonical_json(doc)),
        payload_json=payload,
        extra={"document_sha256": doc["sha256"], "document_size": doc["size"]},
        division=str(lic.get("CZZTQHDM") or ""),
    )


def _certificate_problem(cert: dict[str, Any]) -> str | None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    try:
        parsed = x509.load_pem_x509_certificate(cert["pem"].encode())
    except ValueError as exc:
        return f"certificate/pem is not an X.509 certificate: {exc}"
    actual = parsed.fingerprint(hashes.SHA256()).hex()
    if actual != cert["sha256"]:
        return f"certificate/sha256 {cert['sha256']} is not the certificate's ({actual})"
    return None


def seal_rule_problem(reg: dict[str, Any]) -> str | None:
    """The first seal business rule (module docstring) the registration breaks, or None."""
    seal = reg["seal"]
    start = datetime.fromisoformat(seal["validStart"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(seal["validEnd"].replace("Z", "+00:00"))
    if end <= start:
        return f"seal/validEnd {seal['validEnd']} is not after seal/validStart {seal['validStart']}"
    uscc = reg["department"]["uscc"]
    if len(uscc) != 18 or not uscc_is_valid(uscc):
        return f"department/uscc {uscc!r} is not a valid 18-character USCC (GB 32100)"
    picture = reg["picture"]
    if "data_base64" in picture:
        try:
            data = base64.b64decode(picture["data_base64"], validate=True)
        except (binascii.Error, ValueError):
            return "picture/data_base64 is not base64"
        if hashlib.sha256(data).hexdigest() != picture["sha256"]:
            return "picture/sha256 is not the SHA-256 of picture/data_base64"
    return None


def check_seal_item(key: str, item: dict[str, Any], *, schema: SchemaFile) -> Checked:
    """Schema, certificate (SIGNATURE), then the seal business rules."""
    validate_item(schema, item)
    reg = item["registration"]
    problem = _certificate_problem(reg["certificate"])
    if problem is not None:
        raise ItemRejected("SIGNATURE", problem)
    problem = seal_rule_problem(reg)
    if problem is not None:
        raise ItemRejected("BUSINESS_RULE", problem)
    content = {k: v for k, v in reg.items() if k != "registration"}
    es_id, cert_sha = reg["seal"]["esID"], reg["certificate"]["sha256"]
    return Checked(
        idempotency_key=key,
        identifier=es_id,
        version=None,  # 1 for the seal's first certificate, 2 for the next, ...
        identity=f"{es_id}|{cert_sha}",
        fingerprint=fingerprint_of(canonical_json(content)),
        payload_json=canonical_json(reg),
        extra={"certificate_sha256": cert_sha},
        division=reg["department"]["division"],
    )


def mint_registration_no() -> dict[str, Any]:
    """``BA-<CST date>-<16 hex>``: unique per accepted registration."""
    day = datetime.now(CST).strftime("%Y%m%d")
    return {"registration_no": f"BA-{day}-{uuid.uuid4().hex[:16].upper()}"}
