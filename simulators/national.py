"""A strict national e-license platform simulator (FastAPI), with fault injection.

Stands in for the national integrated platform (全国一体化政务服务平台) that the
hub sends license catalog entries, case records and seal registrations (备案)
to. It never imports the hub. The contract is ``schemas/national.openapi.yaml``;
batch processing, faults, reconciliation and admin endpoints are shared with
the provincial simulator (:mod:`simulators.platform_app`).

Endpoints (``/api/`` ones need ``Authorization: Bearer <token>``, 401 otherwise):

- ``POST /api/v1/catalog/batch`` — ``{"items": [{"idempotency_key", "license",
  "document": {"format": "pdf", "sha256", "size"}}]}``: license metadata (QZ
  non-empty) and the fingerprint of its file; identity (ZZBS, BBH); kind ``license``.
- ``POST /api/v1/cases/batch`` — as on the provincial platform; kind ``case``.
- ``POST /api/v1/seals/batch`` — ``{"items": [{"idempotency_key", "registration"}]}``;
  identity (esID, certificate SHA-256); an accepted receipt carries
  ``registration_no`` (``BA-…``), the same on every duplicate; kind ``seal``
  (identifier esID, version 1 for its first certificate).
- ``GET /api/v1/catalog/{identifier}``, ``GET /api/v1/cases/{case_number}``,
  ``GET /api/v1/seals/{es_id}`` — versions held (404 if none); a seal version
  shows its ``registration`` and ``registration_no``.
- ``GET /api/v1/reconciliation/{YYYY-MM-DD}?kind=license|case|seal``.
- ``GET /healthz``; admin (no auth): ``GET /admin/stats``,
  ``GET /admin/{licenses|cases|seals}``, ``DELETE /admin/{…}/{identifier}/{version}``,
  ``POST /admin/faults``, ``POST /admin/faults/mix``, ``DELETE /admin/faults``.

Every batch endpoint allows ``max_items`` items (500) unless ``max_case_items``
or ``max_seal_items`` say otherwise.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

from fastapi import FastAPI

from simulators.national_checks import check_catalog_item, check_seal_item, mint_registration_no
from simulators.platform_app import add_versions_route, build_app, document_view
from simulators.platform_checks import SCHEMAS_DIR, SchemaFile
from simulators.platform_core import Kind, case_kind
from simulators.platform_store import PlatformStore

TOKEN_ENV = "EHUB_SIM_NATIONAL_TOKEN"
DEV_TOKEN = "dev-national-token"
CATALOG_ITEM_SCHEMA = SCHEMAS_DIR / "catalog_item.schema.json"
SEAL_ITEM_SCHEMA = SCHEMAS_DIR / "seal_item.schema.json"


def create_app(
    state_dir: Path,
    *,
    token: str | None = None,
    max_items: int = 500,
    max_case_items: int | None = None,
    max_seal_items: int | None = None,
    rate_limit: float | None = 200.0,
    timeout_delay: float = 30.0,
    slow_delay: float = 1.0,
) -> FastAPI:
    """Build the simulator app storing its state in ``state_dir``.

    ``token`` defaults to ``$EHUB_SIM_NATIONAL_TOKEN``, else ``dev-national-token``.
    """
    store = PlatformStore(Path(state_dir), "national.sqlite3")
    catalog_schema, seal_schema = SchemaFile(CATALOG_ITEM_SCHEMA), SchemaFile(SEAL_ITEM_SCHEMA)
    kinds = [
        Kind(
            "license",
            "licenses",
            "/api/v1/catalog/batch",
            max_items,
            partial(check_catalog_item, schema=catalog_schema),
            schemas=(catalog_schema,),
        ),
        case_kind(max_case_items or max_items),
        Kind(
            "seal",
            "seals",
            "/api/v1/seals/batch",
            max_seal_items or max_items,
            partial(check_seal_item, schema=seal_schema),
            mint=mint_registration_no,
            schemas=(seal_schema,),
        ),
    ]
    app, guard = build_app(
        "National e-license platform (simulator)",
        store,
        kinds,
        token=token or os.environ.get(TOKEN_ENV) or DEV_TOKEN,
        rate_limit=rate_limit,
        timeout_delay=timeout_delay,
        slow_delay=slow_delay,
    )
    add_versions_route(app, guard, "/api/v1/catalog/{identifier}", "license", "license",
                       document_view)  # fmt: skip
    add_versions_route(app, guard, "/api/v1/cases/{case_number}", "case", "case")
    add_versions_route(app, guard, "/api/v1/seals/{es_id}", "seal", "registration",
                       lambda extra: dict(extra["receipt"]))  # fmt: skip
    return app
