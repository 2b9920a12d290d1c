"""Per-item checks of the provincial platform simulator, independent of the hub.

Each failed check raises :class:`ItemRejected` with one of these error codes:

| code | meaning |
|---|---|
| SCHEMA | license/document missing, or the license fails ``schemas/license.schema.json`` (built-in required-field rules while that file does not exist yet) |
| IDENTIFIER | ZZBS malformed, wrong GB/T 36904 check character, or its issuer segment is not ZZBFJGDM |
| ISSUER_CODE | ZZBFJGDM is not a valid USCC (GB 32100) |
| HOLDER_CODE | CZZTDM fails the check of its code type (``001`` USCC, ``111`` citizen ID) |
| VALIDITY_WINDOW | ZZYXQJZRQ earlier than ZZYXQQSRQ |
| DOCUMENT_INVALID | format is not ``pdf``, content is not base64, or not a PDF file |
| DOCUMENT_HASH | SHA-256 of the decoded content differs from ``document.sha256`` |
| UNSIGNED | no ``/ByteRange`` or no ``/SubFilter /ETSI.CAdES.detached`` in the PDF |
| SIGNATURE_INVALID | integrity mode only: a signature does not verify (content changed after signing, broken CMS) |

Integrity mode verifies every signature cryptographically (digest over
/ByteRange, the CMS signature value, the signing-certificate attribute) and makes
no trust decision: :mod:`simulators.pdf_integrity`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import re
from datetime import date
from typing import Any, Literal

from simulators.checks import citizen_id_is_valid, license_identifier_problem, uscc_is_valid
from simulators.pdf_integrity import integrity_problem
from simulators.platform_checks import (
    Checked,
    ItemRejected,
    SchemaFile,
    canonical_json,
    fingerprint_of,
)

log = logging.getLogger(__name__)

SignatureCheck = Literal["structural", "integrity"]
_SUBFILTER = re.compile(rb"/SubFilter\s*/ETSI\.CAdES\.detached")
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_REQUIRED_STR = (
    "ZZBS",
    "ZZLXDM",
    "ZZMC",
    "ZZBH",
    "ZZBFJG",
    "ZZBFJGDM",
    "ZZBFRQ",
    "ZZYXQQSRQ",
    "CZZT",
    "CZZTDM",
    "CZZTDMLXDM",
    "ZZZT",
)
_STATUSES = {"valid", "suspended", "cancelled", "revoked", "expired"}


class LicenseSchema(SchemaFile):
    """``license.schema.json``, compiled on first use; absent file → built-in rules."""

    def problems(self, instance: Any) -> list[str]:
        if self.load() is None:
            return _builtin_problems(instance)
        return super().problems(instance)


def _builtin_problems(lic: Any) -> list[str]:
    if not isinstance(lic, dict):
        return ["license must be an object"]
    out = [f"{k}: required non-empty string" for k in _REQUIRED_STR if not _nonempty(lic.get(k))]
    bbh = lic.get("BBH")
    if not isinstance(bbh, int) or isinstance(bbh, bool) or bbh < 1:
        out.append("BBH: required integer >= 1")
    for k in ("ZZBFRQ", "ZZYXQQSRQ", "ZZYXQJZRQ"):
        if isinstance(lic.get(k), str) and _iso_date(lic[k]) is None:
            out.append(f"{k}: not a YYYY-MM-DD date")
    if lic.get("ZZZT") not in _STATUSES:
        out.append(f"ZZZT: must be one of {sorted(_STATUSES)}")
    lineage = lic.get("lineage")
    if not isinstance(lineage, dict) or not _HEX64.match(str(lineage.get("content_hash", ""))):
        out.append("lineage: required object with a 64-hex content_hash")
    return out


def _nonempty(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _iso_date(value: Any) -> date | None:
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def license_rules(lic: dict[str, Any]) -> None:
    """IDENTIFIER, ISSUER_CODE, HOLDER_CODE and VALIDITY_WINDOW (module docstring)."""
    problem = license_identifier_problem(lic["ZZBS"])
    if problem is not None:
        raise ItemRejected("IDENTIFIER", f"ZZBS {lic['ZZBS']!r}: {problem}")
    issuer = lic.get("ZZBFJGDM")
    if not isinstance(issuer, str) or not uscc_is_valid(issuer):
        raise ItemRejected("ISSUER_CODE", f"ZZBFJGDM {issuer!r} is not a valid USCC")
    issuer_segment = lic["ZZBS"].split(".")[6]
    if issuer_segment != issuer:
        raise ItemRejected(
            "IDENTIFIER", f"ZZBS issuer segment {issuer_segment!r} differs from ZZBFJGDM {issuer!r}"
        )
    code_type, code = lic.get("CZZTDMLXDM"), lic.get("CZZTDM")
    if (code_type == "001" and not uscc_is_valid(str(code))) or (
        code_type == "111" and not citizen_id_is_valid(str(code))
    ):
        raise ItemRejected("HOLDER_CODE", f"CZZTDM fails the check of code type {code_type}")
    start, end = _iso_date(lic.get("ZZYXQQSRQ")), _iso_date(lic.get("ZZYXQJZRQ"))
    if start and end and end < start:
        raise ItemRejected("VALIDITY_WINDOW", f"ZZYXQJZRQ {end} is earlier than ZZYXQQSRQ {start}")


def _decode_document(doc: Any) -> tuple[bytes, str]:
    if not isinstance(doc, dict):
        raise ItemRejected("SCHEMA", "document must be an object {format, sha256, content_b64}")
    if doc.get("format") != "pdf":
        raise ItemRejected("DOCUMENT_INVALID", f"document format {doc.get('format')!r}; only 'pdf'")
    declared = doc.get("sha256")
    if not isinstance(declared, str) or not _HEX64.match(declared):
        raise ItemRejected("SCHEMA", "document.sha256 must be 64 hex characters")
    try:
        content = base64.b64decode(str(doc.get("content_b64", "")), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ItemRejected("DOCUMENT_INVALID", f"content_b64 is not base64: {exc}") from exc
    if not content.startswith(b"%PDF-"):
        raise ItemRejected("DOCUMENT_INVALID", "document content is not a PDF (no %PDF- header)")
    actual = hashlib.sha256(content).hexdigest()
    if actual != declared.lower():
        raise ItemRejected("DOCUMENT_HASH", f"sha256 of content is {actual}, declared {declared}")
    return content, actual


def _check_signature(content: bytes, mode: SignatureCheck) -> None:
    if b"/ByteRange" not in content or not _SUBFILTER.search(content):
        raise ItemRejected(
            "UNSIGNED", "PDF has no /ByteRange with /SubFilter /ETSI.CAdES.detached (PAdES)"
        )
    if mode == "integrity":
        problem = integrity_problem(content)
        if problem:
            raise ItemRejected("SIGNATURE_INVALID", problem)


def check_item(
    key: str, item: dict[str, Any], *, schema: LicenseSchema, signature_check: SignatureCheck
) -> Checked:
    """Run every content check on one batch item, in the order of the table above."""
    lic = item.get("license")
    if not isinstance(lic, dict):
        raise ItemRejected("SCHEMA", "license must be an object in the License JSON form")
    problems = schema.problems(lic)
    if problems:
        raise ItemRejected("SCHEMA", "; ".join(problems))
    if not isinstance(lic.get("ZZBS"), str) or not isinstance(lic.get("BBH"), int):
        raise ItemRejected("SCHEMA", "ZZBS (string) and BBH (integer) are required")
    license_rules(lic)
    content, sha = _decode_document(item.get("document"))
    _check_signature(content, signature_check)
    license_json = canonical_json(lic)
    return Checked(
        idempotency_key=key,
        identifier=lic["ZZBS"],
        version=lic["BBH"],
        identity=f"{lic['ZZBS']}|{lic['BBH']}",
        fingerprint=fingerprint_of(license_json, sha),
        payload_json=license_json,
        extra={"document_sha256": sha, "document_size": len(content)},
        division=str(lic.get("CZZTQHDM") or lic.get("ZZBFJGQHDM") or ""),
        blob=content,
    )
