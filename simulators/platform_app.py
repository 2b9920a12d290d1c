"""The FastAPI surface shared by the platform simulators (provincial and national).

:func:`build_app` registers, for a list of :class:`~simulators.platform_core.Kind`:

- ``GET /healthz``;
- one ``POST <kind.batch_path>`` per kind: bearer token (401), per-token rate
  limit (429 + ``Retry-After``), then one draw of the app's single fault
  injector (shared by every batch endpoint), then the envelope and the batch;
- ``GET /api/v1/reconciliation/{day}?kind=<kind>`` (default ``license``);
- admin, no auth (a loopback tool): ``GET /admin/stats``, ``GET /admin/<plural>``,
  ``DELETE /admin/<plural>/{identifier}/{version}``, ``POST /admin/faults``,
  ``POST /admin/faults/mix``, ``DELETE /admin/faults``.

Faults (batch endpoints only, drawn after auth and rate limit): ``http500``,
``http503`` / ``http429`` (with ``Retry-After``) store nothing; ``reset`` sends
the status line and headers, then closes the connection mid-body (nothing
stored); ``timeout`` sleeps ``delay`` (default ``timeout_delay``) and then
processes the batch normally, so a client that gave up has in fact delivered;
``slow`` is the same with a shorter default delay; ``partial`` processes every
other item and answers the rest with a retryable ``{"status": "error",
"error_code": "TEMPORARY"}`` receipt; ``lose_receipt`` stores the batch and
answers 502.

Returns the app and its :class:`Guard`, for the platform's own read endpoints.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec
from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from simulators.platform_checks import plain_json
from simulators.platform_core import Kind, error, parse_envelope, process, process_partially
from simulators.platform_core import reconciliation as reconcile
from simulators.platform_store import PlatformStore
from simulators.provincial_faults import (
    DroppedConnection,
    FaultInjector,
    FaultMix,
    FaultRequest,
    RateLimiter,
)

log = logging.getLogger(__name__)


class ReceiptsResponse(JSONResponse):
    """A batch's receipts, encoded by msgspec: the bytes of ``JSONResponse`` (compact,
    UTF-8, keys in insertion order) for the plain values receipts hold, faster."""

    def render(self, content: Any) -> bytes:
        if plain_json(content):
            return _ENCODE(content)
        return super().render(content)  # a float (NaN…): JSONResponse decides


_ENCODE = msgspec.json.Encoder().encode


class Guard:
    """Bearer-token check of the ``/api/`` endpoints; counts refusals."""

    def __init__(self, expected: str, store: PlatformStore) -> None:
        self._expected = expected
        self._store = store

    def caller(self, request: Request) -> str | None:
        """The presented token when it is the right one, else None."""
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip(), self._expected):
            return None
        return value.strip()

    def unauthorized(self) -> JSONResponse:
        self._store.bump("unauthorized")
        return error(
            401, "UNAUTHORIZED", "missing or wrong bearer token", **{"WWW-Authenticate": "Bearer"}
        )


def add_versions_route(
    app: FastAPI,
    guard: Guard,
    path: str,
    kind: str,
    member: str,
    view: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> None:
    """``GET <path>`` (with one ``{identifier}``-like parameter) → the versions held of one
    record: ``{"identifier", "versions": [{"version", "receipt_id", "received_at",
    <member>: <document>, **view(extra)}]}``; 404 when none, 401 without the token."""
    store: PlatformStore = app.state.store

    def versions(request: Request) -> Response:
        if guard.caller(request) is None:
            return guard.unauthorized()
        (identifier,) = request.path_params.values()
        held = store.versions_of(kind, identifier)
        if not held:
            return error(404, "NOT_FOUND", f"no {kind} {identifier}")
        out = [
            {"version": v["version"], "receipt_id": v["receipt_id"],
             "received_at": v["received_at"], member: v["payload"],
             **(view(v["extra"]) if view is not None else {})}
            for v in held
        ]  # fmt: skip
        return JSONResponse({"identifier": identifier, "versions": out})

    versions.__name__ = f"{kind}_versions"
    app.add_api_route(path, versions, methods=["GET"])


def document_view(extra: dict[str, Any]) -> dict[str, Any]:
    """The file fingerprint of a license version, as the first read endpoint showed it."""
    return {"document_sha256": extra["document_sha256"], "size": extra["document_size"]}


def build_app(
    title: str,
    store: PlatformStore,
    kinds: Sequence[Kind],
    *,
    token: str,
    rate_limit: float | None,
    timeout_delay: float,
    slow_delay: float,
    stats_extra: Callable[[], dict[str, Any]] | None = None,
) -> tuple[FastAPI, Guard]:
    """The app with the shared endpoints (module docstring) for ``kinds``."""
    guard = Guard(token, store)
    faults = FaultInjector()
    limiter = RateLimiter(rate_limit)
    by_name = {k.name: k for k in kinds}
    app = FastAPI(title=title, version="1")
    app.state.store = store
    app.state.faults = faults
    app.state.kinds = by_name

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    def batch_endpoint(kind: Kind) -> Callable[[Request], Awaitable[Response]]:
        async def batch(request: Request) -> Response:
            await run_in_threadpool(store.bump, "requests")
            caller = guard.caller(request)
            if caller is None:
                return await run_in_threadpool(guard.unauthorized)
            wait = limiter.retry_after(caller)
            if wait is not None:
                await run_in_threadpool(store.bump, "rate_limited")
                return error(429, "RATE_LIMITED", "too many requests", **{"Retry-After": str(wait)})
            # Read the body before any injected delay: a client that gives up meanwhile
            # must not stop the processing, as on a real platform.
            raw = await request.body()
            fault = faults.draw()
            if fault is not None:
                await run_in_threadpool(store.bump, "faults")
                log.info("%s: injecting fault %s on %s", title, fault.kind, kind.name)
                if fault.kind == "http500":
                    return error(500, "INTERNAL", "injected fault: internal error")
                if fault.kind in ("http503", "http429"):
                    status = 503 if fault.kind == "http503" else 429
                    return error(
                        status, "INJECTED", f"injected fault {fault.kind}", **{"Retry-After": "1"}
                    )
                if fault.kind == "reset":
                    return DroppedConnection()
                if fault.kind in ("timeout", "slow"):
                    default = timeout_delay if fault.kind == "timeout" else slow_delay
                    await asyncio.sleep(fault.delay if fault.delay is not None else default)
            parsed = parse_envelope(raw, kind.max_items)
            if isinstance(parsed, JSONResponse):
                return parsed
            run = process_partially if fault is not None and fault.kind == "partial" else process
            receipts = await run_in_threadpool(run, store, kind, parsed)
            accepted = sum(r["status"] == "accepted" for r in receipts)
            log.info("%s: %s batch of %d items, %d accepted", title, kind.name, len(receipts),
                     accepted)  # fmt: skip
            if fault is not None and fault.kind == "lose_receipt":
                return error(502, "BAD_GATEWAY", "injected fault: batch stored, receipt lost")
            return ReceiptsResponse({"receipts": receipts})

        batch.__name__ = f"{kind.name}_batch"
        return batch

    for kind in kinds:
        app.add_api_route(kind.batch_path, batch_endpoint(kind), methods=["POST"])

    @app.get("/api/v1/reconciliation/{day}")
    def reconciliation(day: str, request: Request, kind: str = "license") -> Response:
        """The versions of ``kind`` received on ``day`` (China Standard Time), their count
        and an order-independent digest: SHA-256 of the sorted ``identifier|version`` lines."""
        if guard.caller(request) is None:
            return guard.unauthorized()
        if kind not in by_name:
            return error(422, "SCHEMA", f"kind must be one of {sorted(by_name)}, not {kind!r}")
        try:
            return JSONResponse(reconcile(store, kind, day))
        except ValueError:
            return error(422, "SCHEMA", f"day must be YYYY-MM-DD, not {day!r}")

    @app.get("/admin/stats")
    def stats() -> dict[str, Any]:
        counts = store.stats(list(by_name))
        legacy = {k.plural: counts["kinds"][k.name]["identifiers"] for k in kinds}
        if "license" in by_name:  # the first stats had license counts only: keep their meaning
            legacy["versions"] = counts["kinds"]["license"]["versions"]
        extra = stats_extra() if stats_extra is not None else {}
        return {**legacy, **counts, **extra, "fault": faults.describe()}

    def admin_routes(kind: Kind) -> None:
        def listing(limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
            return store.list_versions(kind.name, limit=limit, offset=offset)

        def delete(identifier: str, version: int) -> Response:
            if not store.delete(kind.name, identifier, version):
                return error(404, "NOT_FOUND", f"no version {version} of {kind.name} {identifier}")
            return Response(status_code=204)

        listing.__name__, delete.__name__ = f"list_{kind.plural}", f"delete_{kind.name}"
        app.add_api_route(f"/admin/{kind.plural}", listing, methods=["GET"])
        app.add_api_route(
            f"/admin/{kind.plural}/{{identifier}}/{{version}}", delete, methods=["DELETE"]
        )

    for kind in kinds:
        admin_routes(kind)

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

    return app, guard
