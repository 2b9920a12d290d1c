"""A strict provincial e-license platform simulator (FastAPI), with fault injection.

Stands in for the province's 电子证照 platform that the hub delivers sealed
licenses and case records to. It never imports the hub and re-implements every
check itself. The contract is ``schemas/provincial.openapi.yaml``; batch
processing, faults, reconciliation and admin endpoints are shared with the
national simulator (:mod:`simulators.platform_app`, :mod:`simulators.platform_core`).

Endpoints (``/api/`` ones need ``Authorization: Bearer <token>``, 401 otherwise):

- ``POST /api/v1/licenses/batch`` — ``{"items": [{"idempotency_key", "license",
  "document": {"format": "pdf", "sha256", "content_b64"}}]}``, at most
  ``max_items`` (100) items; identity (ZZBS, BBH); error codes in
  :mod:`simulators.provincial_checks`.
- ``POST /api/v1/cases/batch`` — ``{"items": [{"idempotency_key", "case"}]}``,
  at most ``max_case_items`` (1000); the case validated against
  ``schemas/case.schema.json`` (SCHEMA) and the case rules of
  :mod:`simulators.platform_checks` (BUSINESS_RULE); identity (BJBH, BBH).
- ``GET /api/v1/licenses/{identifier}``, ``GET /api/v1/cases/{case_number}`` —
  versions held (404 if none).
- ``GET /api/v1/reconciliation/{YYYY-MM-DD}?kind=license|case`` — the day's report.
- ``GET /api/v1/return/{division}?after=<cursor>&limit=N`` — the return
  interface (属地返还): license and case versions held whose division (license:
  CZZTQHDM, else ZZBFJGQHDM; case: XZQHDM) starts with ``division``, in cursor
  order, ``{"division", "items", "next"}``.
- ``GET /healthz``; admin (no auth): ``GET /admin/stats``, ``GET /admin/licenses``,
  ``GET /admin/cases``, ``DELETE /admin/{licenses|cases}/{identifier}/{version}``,
  ``POST /admin/faults``, ``POST /admin/faults/mix``, ``DELETE /admin/faults``,
  ``POST /admin/return/records`` (``{"items": [{"kind": "license"|"case", "record"}]}``:
  versions other departments gave the platform, handed back by the return interface).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import uuid
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from simulators.platform_app import add_versions_route, build_app, document_view
from simulators.platform_checks import SCHEMAS_DIR, Checked
from simulators.platform_core import Kind, case_kind, error
from simulators.platform_store import PlatformStore, StoredVersion
from simulators.provincial_checks import LicenseSchema, SignatureCheck, check_item

log = logging.getLogger(__name__)

TOKEN_ENV = "EHUB_SIM_PROVINCIAL_TOKEN"
DEV_TOKEN = "dev-provincial-token"
DEFAULT_SCHEMA = SCHEMAS_DIR / "license.schema.json"
_DIVISION = re.compile(r"^[0-9]{2,12}$")


def _document_keeper(documents_dir: Path) -> Any:
    def keep(stored: list[Checked]) -> None:
        documents_dir.mkdir(parents=True, exist_ok=True)
        for kept in stored:
            if kept.blob is not None:
                name = f"{kept.extra['document_sha256']}.pdf"
                (documents_dir / name).write_bytes(kept.blob)

    return keep


def create_app(
    state_dir: Path,
    *,
    schema_path: Path | None = None,
    token: str | None = None,
    max_items: int = 100,
    max_case_items: int = 1000,
    rate_limit: float | None = 200.0,
    timeout_delay: float = 30.0,
    slow_delay: float = 1.0,
    signature_check: SignatureCheck = "integrity",
    keep_documents: bool = False,
) -> FastAPI:
    """Build the simulator app storing its state in ``state_dir``.

    ``token`` defaults to ``$EHUB_SIM_PROVINCIAL_TOKEN``, else ``dev-provincial-token``.
    ``signature_check="structural"`` only looks for /ByteRange and the PAdES
    SubFilter (for fake documents in tests); ``"integrity"`` also verifies the
    signatures cryptographically (no trust decision).
    """
    state_dir = Path(state_dir)
    store = PlatformStore(state_dir, "provincial.sqlite3")
    schema = LicenseSchema(schema_path or DEFAULT_SCHEMA)
    licenses = Kind(
        "license",
        "licenses",
        "/api/v1/licenses/batch",
        max_items,
        partial(check_item, schema=schema, signature_check=signature_check),
        on_stored=_document_keeper(state_dir / "documents") if keep_documents else None,
        schemas=(schema,),
    )
    app, guard = build_app(
        "Provincial e-license platform (simulator)",
        store,
        [licenses, case_kind(max_case_items)],
        token=token or os.environ.get(TOKEN_ENV) or DEV_TOKEN,
        rate_limit=rate_limit,
        timeout_delay=timeout_delay,
        slow_delay=slow_delay,
        stats_extra=lambda: {"schema": schema.source, "signature_check": signature_check},
    )

    add_versions_route(app, guard, "/api/v1/licenses/{identifier}", "license", "license",
                       document_view)  # fmt: skip
    add_versions_route(app, guard, "/api/v1/cases/{case_number}", "case", "case")

    @app.get("/api/v1/return/{division}")
    def returned(division: str, request: Request, after: int = 0, limit: int = 100) -> Response:
        """属地返还: versions whose division starts with ``division``, after cursor ``after``."""
        if guard.caller(request) is None:
            return guard.unauthorized()
        if not _DIVISION.match(division):
            return error(422, "SCHEMA", f"division must be 2-12 digits, not {division!r}")
        if after < 0 or not 1 <= limit <= 1000:
            return error(422, "SCHEMA", "after must be >= 0 and limit between 1 and 1000")
        items = store.feed(("license", "case"), division, after=after, limit=limit)
        next_cursor = items[-1]["cursor"] if items else after
        return JSONResponse({"division": division, "items": items, "next": next_cursor})

    @app.post("/admin/return/records")
    async def seed_returned(request: Request) -> Response:
        """Admin (a loopback tool): versions other departments gave the platform, which
        its return interface hands back to the hub with the hub's own."""
        try:
            body = await request.json()
            items = [_other_department_item(i) for i in body["items"]]
        except (ValueError, KeyError, TypeError) as exc:
            return error(422, "SCHEMA", f"items: {exc}")
        with store.transaction() as tx:
            stored = 0
            for kind, identity, stored_version, payload_json, division in items:
                if tx.by_version(kind, stored_version.identifier, stored_version.version):
                    continue
                tx.insert(kind, stored_version, identity=identity, payload_json=payload_json,
                          division=division)  # fmt: skip
                stored += 1
        return JSONResponse({"stored": stored, "items": len(items)})

    return app


_ITEM_FIELDS = {"license": ("ZZBS", "BBH", ("CZZTQHDM", "ZZBFJGQHDM")),
                "case": ("BJBH", "BBH", ("XZQHDM",))}  # fmt: skip


def _other_department_item(item: dict[str, Any]) -> tuple[str, str, StoredVersion, str, str]:
    """(kind, identity, version, payload, division) of a seeded other-department record."""
    kind, record = item["kind"], item["record"]
    if kind not in _ITEM_FIELDS or not isinstance(record, dict):
        raise ValueError(f"kind must be license or case with a record object, not {kind!r}")
    id_field, version_field, division_fields = _ITEM_FIELDS[kind]
    identifier, version = str(record[id_field]), int(record[version_field])
    division = next((str(record[f]) for f in division_fields if record.get(f)), "")
    payload = json.dumps(record, ensure_ascii=False, sort_keys=True)
    stored = StoredVersion(
        identifier, version, f"RCPT-{uuid.uuid4().hex}", f"other-department:{kind}:{identifier}:{version}",
        hashlib.sha256(payload.encode()).hexdigest(),
        datetime.now(UTC).isoformat(timespec="milliseconds"), {"origin": "other-department"},
    )  # fmt: skip
    return kind, f"{identifier}|{version}", stored, payload, division
