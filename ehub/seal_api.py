"""On-demand sealing: a department's issuing system posts a license, gets the sealed PDF.

``POST /v1/sources/{source_id}/licenses`` with ``Authorization: Bearer <token>``
(an API client, :mod:`ehub.api_clients`) and one record as a JSON object, in the
field names of the source's spec (kind ``api``). The record goes the way of a
pulled one — stored raw, normalized and validated by the spec, versioned — and
is then sealed at once with the seal the registry selects; its delivery and
return-feed outbox rows are written with it, so the platform and feed stages
carry it like any other license.

Answers:

- ``201`` the sealed PDF (``application/pdf``); headers ``X-Ehub-Identifier``,
  ``X-Ehub-Version``, ``Location`` (where to fetch it again) and ``ETag``;
- ``200`` the same, for a post whose content equals a version already sealed
  (posting again is safe: nothing is stored or sealed twice);
- ``202`` accepted but not sealed now — held (no usable seal, the TSA is down…)
  or already waiting for the seal stage — with the reason; the pipeline seals it
  when it can, and the client fetches it with ``GET`` later;
- ``422`` the record is invalid: every defect with source, record key, field and
  bilingual message; the record is in quarantine like a pulled one;
- ``400`` / ``413`` / ``415`` not a JSON object, too large, wrong content type;
- ``401`` no or unknown token; ``403`` the client may not post to that source,
  or the license's issuer is not the client's department; ``404`` no such API
  source; ``503`` the hub store is unavailable.

``GET /v1/sources/{source_id}/licenses/{identifier}/versions/{version}/document``
returns a sealed PDF posted through that source.

A crash in the middle leaves a raw record ``receiving`` or a license
``sealing``; after the spec's ``api.reclaim_after_s`` the source's DAG hands
them to the normalize and seal stages (:func:`ehub.pipeline.intake.reclaim`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Any, cast

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import CursorResult, and_, select, update
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from ehub.api_clients import ClientInfo, authenticate
from ehub.config import Settings
from ehub.errors import ConfigError, StoreError
from ehub.normalize import RecordRejected
from ehub.normalize.canonical import SpecNormalizer
from ehub.pipeline import normalize
from ehub.pipeline.extract import ensure_source, payload_hash
from ehub.pipeline.faults import crash_point
from ehub.pipeline.intake import RECEIVING, SEALING
from ehub.pipeline.seal import Outcome, SealContext, load_pending, record
from ehub.seals import SealRegistry
from ehub.sources.loader import load_spec, spec_files
from ehub.sources.spec import SourceSpec
from ehub.store.db import Store, insert_ignore, utcnow
from ehub.store.models import LicenseRow, RawRecord, SignatureRow

log = logging.getLogger(__name__)


class _Api:
    """State shared by the requests of one process: specs, normalizers, the sealers."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self._specs: dict[str, tuple[SourceSpec, SpecNormalizer]] = {}
        self._ctx: SealContext | None = None
        self._lock = threading.Lock()  # sealers are opened and used one at a time

    def spec(self, source_id: str) -> tuple[SourceSpec, SpecNormalizer] | None:
        if source_id not in self._specs:
            for path in spec_files():
                spec = load_spec(path)
                if spec.kind == "api" and spec.id == source_id:
                    ensure_source(self.store, spec)
                    self._specs[source_id] = (spec, SpecNormalizer(spec))
        return self._specs.get(source_id)

    def seal(self, license_id: int) -> Outcome:
        with self._lock:
            if self._ctx is None:
                self._ctx = SealContext(self.settings, self.store)
            registry = SealRegistry.load(self.store)
            with self.store.session() as s:
                pending = load_pending(s, license_id)
            assert pending is not None
            out = self._ctx.seal(registry, pending)
        with self.store.session() as s:
            record(s, [out])
        return out


def create_router(settings: Settings, store: Store) -> APIRouter:
    api = _Api(settings, store)
    router = APIRouter()

    @router.post("/v1/sources/{source_id}/licenses")
    async def post_license(source_id: str, request: Request) -> Response:
        client = _client(store, request)
        if isinstance(client, Response):
            return client
        if source_id not in client.source_ids:
            return _problem(403, f"client {client.name} may not post to {source_id}")
        found = api.spec(source_id)
        if found is None:
            return _problem(404, f"no API source {source_id}")
        spec, norm = found
        if "json" not in request.headers.get("content-type", ""):
            return _problem(415, "post the record as application/json")
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > spec.inbox.max_body_bytes:
            return _problem(413, f"the record exceeds {spec.inbox.max_body_bytes} bytes")
        body = await request.body()
        if len(body) > spec.inbox.max_body_bytes:
            return _problem(413, f"the record exceeds {spec.inbox.max_body_bytes} bytes")
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            return _problem(400, f"the body is not JSON: {exc}")
        if not isinstance(payload, dict):
            return _problem(400, "the body must be one JSON object (one license record)")
        return await run_in_threadpool(_receive, api, client, spec, norm, payload)

    @router.get("/v1/sources/{source_id}/licenses/{identifier}/versions/{version}/document")
    def get_document(source_id: str, identifier: str, version: int, request: Request) -> Response:
        client = _client(store, request)
        if isinstance(client, Response):
            return client
        if source_id not in client.source_ids:
            return _problem(403, f"client {client.name} may not read {source_id}")
        try:
            with store.session() as s:
                row = s.execute(
                    select(LicenseRow.id, LicenseRow.state, SignatureRow.path)
                    .outerjoin(SignatureRow, and_(SignatureRow.license_id == LicenseRow.id,
                                                  SignatureRow.format == "pades"))
                    .where(LicenseRow.identifier == identifier, LicenseRow.version == version,
                           LicenseRow.source_id == source_id)
                ).first()  # fmt: skip
        except (StoreError, SQLAlchemyError) as exc:
            return _unavailable(exc)
        if row is None:
            return _problem(404, f"no license {identifier} version {version} from {source_id}")
        if row.path is None:
            return JSONResponse({"identifier": identifier, "version": version,
                                 "state": row.state}, status_code=202)  # fmt: skip
        return _pdf(Path(row.path).read_bytes(), source_id, identifier, version, 200)

    return router


def _receive(
    api: _Api, client: ClientInfo, spec: SourceSpec, norm: SpecNormalizer, payload: dict[str, Any]
) -> Response:
    started = time.perf_counter()
    store = api.store
    key = str(payload.get(spec.key) or "")[:200] or f"(no {spec.key})"
    try:  # pure, nothing stored yet: a license of another department is refused outright
        issuer = getattr(norm.normalize(payload, key, "api"), "issuer_code", None)
    except RecordRejected:
        issuer = None  # stored and quarantined below, with every defect named
    if issuer is not None and issuer != client.department_uscc:
        return _problem(403, f"client {client.name} issues licenses of {client.department_uscc}, "
                        f"not of {issuer} (ZZBFJGDM)")  # fmt: skip
    h = payload_hash(payload)
    try:
        with store.session() as s:
            insert_ignore(s, RawRecord.__table__, [{
                "source_id": spec.id, "source_key": key,
                "source_version": f"api:{utcnow().isoformat()}"[:100], "payload": payload,
                "payload_hash": h, "state": RECEIVING, "extracted_at": utcnow(),
            }], ["source_id", "source_key", "payload_hash"])  # fmt: skip
            raw_id, sver = s.execute(
                select(RawRecord.id, RawRecord.source_version).where(
                    RawRecord.source_id == spec.id, RawRecord.source_key == key,
                    RawRecord.payload_hash == h)
            ).one()  # fmt: skip
        crash_point(api.settings.fault, "api", 1, "received")
        out = normalize.process_batch(
            api.settings, store, spec, norm, [(raw_id, key, sver, payload)], 0,
            license_state=SEALING,
        )  # fmt: skip
        if raw_id in out.bad_ids:
            return _rejected(spec, key, [r for r in out.rejects if r["raw_id"] == raw_id])
        identifier, version = out.records[raw_id]
        claim = f"api:{uuid.uuid4().hex}"
        with store.session() as s:
            if version is None:  # the same content as the newest stored version
                version = s.scalar(select(LicenseRow.version)
                                   .where(LicenseRow.identifier == identifier)
                                   .order_by(LicenseRow.version.desc()).limit(1))  # fmt: skip
            row = s.execute(select(LicenseRow.id, LicenseRow.state, LicenseRow.state_reason)
                            .where(LicenseRow.identifier == identifier,
                                   LicenseRow.version == version)).one()  # fmt: skip
            claimed = row.state == SEALING and row.state_reason is None and cast(
                CursorResult[Any], s.execute(
                    update(LicenseRow)
                    .where(LicenseRow.id == row.id, LicenseRow.state == SEALING,
                           LicenseRow.state_reason.is_(None))
                    .values(state_reason=claim, state_at=utcnow())
                )).rowcount == 1  # fmt: skip
        assert version is not None
        if not claimed:
            return _existing(store, spec.id, row.id, identifier, version)
        crash_point(api.settings.fault, "api", 1, "claimed")
        sealed = api.seal(row.id)
        crash_point(api.settings.fault, "api", 1, "sealed")  # recorded, not yet answered
    except (StoreError, SQLAlchemyError) as exc:
        return _unavailable(exc)
    except ConfigError as exc:
        return _problem(500, f"the hub cannot seal for {spec.id}: {exc}")
    if not sealed.sealed:
        return JSONResponse({
            "identifier": identifier, "version": version, "state": "held",
            "reason": sealed.hold_code, "message": sealed.hold_message,
        }, status_code=202)  # fmt: skip
    log.info("%s: %s v%d sealed on demand in %.0f ms", spec.id, identifier, version,
             (time.perf_counter() - started) * 1000)  # fmt: skip
    if sealed.pdf is None:  # a license type sealed as OFD only
        return _pdf(cast(bytes, sealed.ofd), spec.id, identifier, version, 201, OFD_MEDIA_TYPE)
    return _pdf(sealed.pdf, spec.id, identifier, version, 201)


def _existing(store: Store, source_id: str, license_id: int, identifier: str,
              version: int) -> Response:  # fmt: skip
    """A post of a version already stored: its sealed PDF, or where it stands."""
    with store.session() as s:
        state, reason = s.execute(
            select(LicenseRow.state, LicenseRow.state_reason).where(LicenseRow.id == license_id)
        ).one()
        path = s.scalar(select(SignatureRow.path).where(
            SignatureRow.license_id == license_id, SignatureRow.format == "pades"))  # fmt: skip
    if state == "sealed" and path is not None:
        return _pdf(Path(path).read_bytes(), source_id, identifier, version, 200)
    body: dict[str, Any] = {"identifier": identifier, "version": version, "state": state}
    if state == "held" and reason:
        body["reason"], _, body["message"] = reason.partition(": ")
    return JSONResponse(body, status_code=202)


OFD_MEDIA_TYPE = "application/ofd"


def _pdf(data: bytes, source_id: str, identifier: str, version: int, status: int,
         media_type: str = "application/pdf") -> Response:  # fmt: skip
    return Response(data, status_code=status, media_type=media_type, headers={
        "X-Ehub-Identifier": identifier, "X-Ehub-Version": str(version),
        "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
        "Location": f"/v1/sources/{source_id}/licenses/{identifier}/versions/{version}/document",
    })  # fmt: skip


def _rejected(spec: SourceSpec, key: str, rejects: list[dict[str, Any]]) -> Response:
    # The offending values go out masked (as in the rejects reports): no ID number or
    # person's name in clear in an answer that leaves the hub.
    from ehub.quarantine_masking import is_person_record, mask_value

    def value(r: dict[str, Any]) -> str | None:
        person = isinstance(r["payload"], dict) and is_person_record(r["payload"])
        return mask_value(r["reason_code"], r["field"], r["value"], person=person)

    return JSONResponse({
        "source": spec.id, "record": key, "quarantined": True,
        "errors": [{"field": r["field"], "reason": r["reason_code"], "value": value(r),
                    "message_zh": r["message_zh"], "message_en": r["message_en"]}
                   for r in rejects],
    }, status_code=422)  # fmt: skip


def _client(store: Store, request: Request) -> ClientInfo | Response:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return _problem(401, "send the client's token: Authorization: Bearer <token>")
    try:
        client = authenticate(store, token.strip())
    except (StoreError, SQLAlchemyError) as exc:
        return _unavailable(exc)
    if client is None:
        return _problem(401, "unknown or revoked token")
    return client


def _problem(status: int, detail: str) -> Response:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"status": status, "detail": detail}, status_code=status, headers=headers)


def _unavailable(exc: Exception) -> Response:
    log.warning("sealing API: the hub store is unavailable: %s", exc)
    return _problem(503, "the hub store is unavailable; post again later (nothing was lost)")
