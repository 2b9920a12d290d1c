"""A strict provincial e-license platform simulator (FastAPI), with fault injection.

Stands in for the province's 电子证照 platform that the hub delivers sealed
licenses to. It never imports the hub and re-implements every check itself
(see :mod:`simulators.provincial_checks` for the error codes).

Endpoints:

- ``POST /api/v1/licenses/batch`` — ``{"items": [{"idempotency_key", "license",
  "document": {"format": "pdf", "sha256", "content_b64"}}]}``, at most
  ``max_items`` (100) items (413 above, 422 for a malformed envelope). Needs
  ``Authorization: Bearer <token>`` (401). Answers 200 ``{"receipts": [...]}``
  in item order, each ``{"idempotency_key", "status": "accepted"|"rejected",
  "receipt_id"?, "error_code"?, "message"?, "duplicate"}``. A repeated key with
  the same content returns the original receipt with ``duplicate: true`` and
  stores nothing; the same key with other content is ``IDEMPOTENCY_MISMATCH``;
  the same (ZZBS, BBH) under another key is ``CONFLICT``. Per-token rate
  limit → 429 with ``Retry-After``.
- ``GET /api/v1/licenses/{identifier}`` — versions held (auth required; 404 if none).
- ``GET /api/v1/reconciliation/{YYYY-MM-DD}`` — the day's report (China Standard
  Time): versions received that day, their count and an order-independent digest
  (SHA-256 of the sorted ``identifier|version`` lines joined by newlines).
- ``GET /healthz``; admin (no auth, loopback tool): ``GET /admin/stats``,
  ``GET /admin/licenses``, ``DELETE /admin/licenses/{identifier}/{version}``,
  ``POST /admin/faults``, ``POST /admin/faults/mix`` (several kinds at once, each
  at its rate), ``DELETE /admin/faults``.

Faults (batch endpoint only, drawn after auth and rate limit): ``http500``,
``http503`` / ``http429`` (with ``Retry-After``) store nothing; ``reset`` sends
the status line and headers, then closes the connection mid-body (ASGI servers
must close a connection whose response the app left incomplete; no receipt
reaches the client, nothing is stored); ``timeout`` sleeps ``delay`` (default
``timeout_delay``) and then processes the batch normally, so a client that gave
up has in fact delivered; ``slow`` is the same with a shorter default delay;
``partial`` processes every other item and answers the rest with a retryable
``{"status": "error", "error_code": "TEMPORARY"}`` receipt;
``lose_receipt`` stores the batch and answers 502.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import uuid
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from simulators.provincial_checks import (
    CheckedItem,
    ItemRejected,
    LicenseSchema,
    SignatureCheck,
    check_item,
)
from simulators.provincial_faults import (
    DroppedConnection,
    FaultInjector,
    FaultMix,
    FaultRequest,
    RateLimiter,
)
from simulators.provincial_store import ProvincialStore, StoredVersion

CST = timezone(timedelta(hours=8))

log = logging.getLogger(__name__)

TOKEN_ENV = "EHUB_SIM_PROVINCIAL_TOKEN"
DEV_TOKEN = "dev-provincial-token"
DEFAULT_SCHEMA = Path(__file__).resolve().parent.parent / "schemas" / "license.schema.json"


def _error(status: int, code: str, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status, headers=headers)


class _Platform:
    """The app's state and batch processing, kept out of the route closures."""

    def __init__(
        self,
        state_dir: Path,
        schema: LicenseSchema,
        signature_check: SignatureCheck,
        keep_documents: bool,
    ) -> None:
        self.store = ProvincialStore(state_dir)
        self.schema = schema
        self.signature_check = signature_check
        self.documents_dir = state_dir / "documents" if keep_documents else None

    def process(self, items: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
        checked: list[CheckedItem | ItemRejected] = []
        for key, item in items:
            try:
                checked.append(
                    check_item(key, item, schema=self.schema, signature_check=self.signature_check)
                )
            except ItemRejected as rejection:
                checked.append(rejection)
        receipts: list[dict[str, Any]] = []
        stored: list[CheckedItem] = []
        with self.store.transaction() as tx:
            for (key, _), result in zip(items, checked, strict=True):
                if isinstance(result, ItemRejected):
                    receipts.append(_rejected(key, result.code, result.message))
                    continue
                original = tx.by_key(key)
                if original is not None:
                    if original.fingerprint == result.fingerprint:
                        receipts.append(_accepted(key, original.receipt_id, duplicate=True))
                    else:
                        receipts.append(
                            _rejected(
                                key,
                                "IDEMPOTENCY_MISMATCH",
                                f"key already accepted {original.identifier} v{original.version}"
                                " with different content",
                            )
                        )
                    continue
                clash = tx.by_version(result.identifier, result.version)
                if clash is not None:
                    receipts.append(
                        _rejected(
                            key,
                            "CONFLICT",
                            f"{result.identifier} v{result.version} already stored under another"
                            f" idempotency key (receipt {clash.receipt_id})",
                        )
                    )
                    continue
                receipt_id = f"RCPT-{uuid.uuid4().hex}"
                tx.insert(
                    StoredVersion(
                        result.identifier,
                        result.version,
                        receipt_id,
                        key,
                        result.fingerprint,
                        datetime.now(UTC).isoformat(timespec="milliseconds"),
                    ),
                    license_json=result.license_json,
                    document_sha256=result.document_sha256,
                    document_size=len(result.document),
                )
                stored.append(result)
                receipts.append(_accepted(key, receipt_id, duplicate=False))
            tx.bump("items", len(items))
            tx.bump(
                "accepted", sum(r["status"] == "accepted" and not r["duplicate"] for r in receipts)
            )
            tx.bump("duplicates", sum(bool(r["duplicate"]) for r in receipts))
            tx.bump("rejected", sum(r["status"] == "rejected" for r in receipts))
        if self.documents_dir is not None:
            self.documents_dir.mkdir(parents=True, exist_ok=True)
            for kept in stored:
                (self.documents_dir / f"{kept.document_sha256}.pdf").write_bytes(kept.document)
        return receipts


def _partial(platform: _Platform, items: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Partial batch failure: every other item is not processed and gets a retryable
    error receipt; the rest are processed normally."""
    keep = items[::2]
    done = {r["idempotency_key"]: r for r in platform.process(keep)}
    return [
        done.get(key) or {"idempotency_key": key, "status": "error", "retryable": True,
                          "error_code": "TEMPORARY", "message": "injected fault: not processed, "
                          "send again with the same idempotency key"}
        for key, _ in items
    ]  # fmt: skip


def _accepted(key: str, receipt_id: str, *, duplicate: bool) -> dict[str, Any]:
    return {
        "idempotency_key": key,
        "status": "accepted",
        "receipt_id": receipt_id,
        "duplicate": duplicate,
    }


def _rejected(key: str, code: str, message: str) -> dict[str, Any]:
    return {
        "idempotency_key": key,
        "status": "rejected",
        "error_code": code,
        "message": message,
        "duplicate": False,
    }


def _parse_envelope(raw: bytes, max_items: int) -> list[tuple[str, dict[str, Any]]] | JSONResponse:
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return _error(422, "MALFORMED", f"body is not JSON: {exc}")
    items = body.get("items") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        return _error(422, "MALFORMED", 'body must be {"items": [...]} with at least one item')
    if len(items) > max_items:
        return _error(413, "TOO_MANY_ITEMS", f"{len(items)} items; at most {max_items} per batch")
    out: list[tuple[str, dict[str, Any]]] = []
    for n, item in enumerate(items):
        key = item.get("idempotency_key") if isinstance(item, dict) else None
        if not isinstance(key, str) or not key.strip() or len(key) > 200:
            return _error(422, "MALFORMED", f"items[{n}]: idempotency_key must be a string (1-200)")
        out.append((key, item))
    return out


def create_app(
    state_dir: Path,
    *,
    schema_path: Path | None = None,
    token: str | None = None,
    max_items: int = 100,
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
    expected = token or os.environ.get(TOKEN_ENV) or DEV_TOKEN
    platform = _Platform(
        Path(state_dir),
        LicenseSchema(schema_path or DEFAULT_SCHEMA),
        signature_check,
        keep_documents,
    )
    faults = FaultInjector()
    limiter = RateLimiter(rate_limit)
    app = FastAPI(title="Provincial e-license platform (simulator)", version="1")
    app.state.platform = platform
    app.state.faults = faults

    def bearer(request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip(), expected):
            return None
        return value.strip()

    def unauthorized() -> JSONResponse:
        platform.store.bump("unauthorized")
        return _error(
            401, "UNAUTHORIZED", "missing or wrong bearer token", **{"WWW-Authenticate": "Bearer"}
        )

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/api/v1/licenses/batch")
    async def batch(request: Request) -> Response:
        await run_in_threadpool(platform.store.bump, "requests")
        caller = bearer(request)
        if caller is None:
            return await run_in_threadpool(unauthorized)
        wait = limiter.retry_after(caller)
        if wait is not None:
            await run_in_threadpool(platform.store.bump, "rate_limited")
            return _error(429, "RATE_LIMITED", "too many requests", **{"Retry-After": str(wait)})
        # Read the body before any injected delay: a client that gives up meanwhile
        # must not stop the processing, as on a real platform.
        raw = await request.body()
        fault = faults.draw()
        if fault is not None:
            await run_in_threadpool(platform.store.bump, "faults")
            log.info("provincial simulator: injecting fault %s", fault.kind)
            if fault.kind == "http500":
                return _error(500, "INTERNAL", "injected fault: internal error")
            if fault.kind in ("http503", "http429"):
                status = 503 if fault.kind == "http503" else 429
                return _error(
                    status, "INJECTED", f"injected fault {fault.kind}", **{"Retry-After": "1"}
                )
            if fault.kind == "reset":
                return DroppedConnection()
            if fault.kind in ("timeout", "slow"):
                default = timeout_delay if fault.kind == "timeout" else slow_delay
                await asyncio.sleep(fault.delay if fault.delay is not None else default)
        parsed = _parse_envelope(raw, max_items)
        if isinstance(parsed, JSONResponse):
            return parsed
        if fault is not None and fault.kind == "partial":
            receipts = await run_in_threadpool(_partial, platform, parsed)
        else:
            receipts = await run_in_threadpool(platform.process, parsed)
        accepted = sum(r["status"] == "accepted" for r in receipts)
        log.info("provincial simulator: batch of %d items, %d accepted", len(receipts), accepted)
        if fault is not None and fault.kind == "lose_receipt":
            return _error(502, "BAD_GATEWAY", "injected fault: batch stored, receipt lost")
        return JSONResponse({"receipts": receipts})

    @app.get("/api/v1/licenses/{identifier}")
    def versions(identifier: str, request: Request) -> Response:
        if bearer(request) is None:
            return unauthorized()
        held = platform.store.versions_of(identifier)
        if not held:
            return _error(404, "NOT_FOUND", f"no license {identifier}")
        for v in held:
            v["license"] = json.loads(v["license"])
        return JSONResponse({"identifier": identifier, "versions": held})

    @app.get("/api/v1/reconciliation/{day}")
    def reconciliation(day: str, request: Request) -> Response:
        """The versions received on ``day`` (China Standard Time), with their count and
        an order-independent digest: SHA-256 of the sorted ``identifier|version`` lines."""
        if bearer(request) is None:
            return unauthorized()
        try:
            start = datetime.combine(date.fromisoformat(day), time(), tzinfo=CST)
        except ValueError:
            return _error(422, "SCHEMA", f"day must be YYYY-MM-DD, not {day!r}")
        utc = [(start + timedelta(days=n)).astimezone(UTC).isoformat(timespec="milliseconds")
               for n in (0, 1)]  # fmt: skip
        items = platform.store.received_between(utc[0], utc[1])
        lines = sorted(f"{i['identifier']}|{i['version']}" for i in items)
        digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()
        return JSONResponse({"day": day, "timezone": "+08:00", "count": len(items),
                             "digest": digest, "items": items})  # fmt: skip

    @app.get("/admin/stats")
    def stats() -> dict[str, Any]:
        return {
            **platform.store.stats(),
            "schema": platform.schema.source,
            "signature_check": platform.signature_check,
            "fault": faults.describe(),
        }

    @app.get("/admin/licenses")
    def list_licenses(limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
        return platform.store.list_versions(limit=limit, offset=offset)

    @app.delete("/admin/licenses/{identifier}/{version}")
    def delete_version(identifier: str, version: int) -> Response:
        if not platform.store.delete(identifier, version):
            return _error(404, "NOT_FOUND", f"no version {version} of {identifier}")
        return Response(status_code=204)

    @app.post("/admin/faults")
    def set_fault(fault: FaultRequest) -> dict[str, Any] | None:
        faults.set(fault)
        return faults.describe()

    @app.post("/admin/faults/mix")
    def set_fault_mix(mix: FaultMix) -> dict[str, Any] | None:
        faults.set_mix(mix)
        return faults.describe()

    @app.delete("/admin/faults")
    def clear_fault() -> Response:
        faults.clear()
        return Response(status_code=204)

    return app
