"""The pull API of the grassroots offices (数据属地返还, for offices without Kafka).

``GET /v1/offices/{code}/records?kind=license|case&after=<cursor>&limit=<n>``
with ``Authorization: Bearer <office credential>`` answers the office's own
records (:mod:`ehub.office_feed`): ``{"office", "kind", "items": [...], "next",
"more"}``; ask again with ``after=next`` until ``more`` is false. An office asking
for another office's records gets 403 and the attempt is written to the audit
log (``office_access_denied``); a missing or revoked credential gets 401.
"""

from __future__ import annotations

import logging
from typing import Any, cast

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from ehub import office_feed
from ehub.audit import Event, append
from ehub.errors import StoreError
from ehub.offices import Office, RecordKind, authenticate
from ehub.store.db import Store

log = logging.getLogger(__name__)

MAX_CURSOR = 2**63 - 1


def _problem(status: int, detail: str, **headers: str) -> JSONResponse:
    return JSONResponse({"status": status, "detail": detail}, status_code=status, headers=headers)


def _office(store: Store, request: Request) -> Office | Response:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return _problem(401, "give the office's credential as a bearer token",
                        **{"WWW-Authenticate": "Bearer"})  # fmt: skip
    office = authenticate(store, token.strip())
    if office is None:
        return _problem(401, "unknown or revoked office credential",
                        **{"WWW-Authenticate": "Bearer"})  # fmt: skip
    return office


def _denied(store: Store, office: Office, asked: str, client: str) -> None:
    log.warning("office %s asked for the records of office %s: refused", office.code, asked)
    with store.session() as s:
        append(s, [Event("office_access_denied", office.code, None,
                         {"asked_for": asked, "client": client})])  # fmt: skip


def create_router(store: Store) -> APIRouter:
    router = APIRouter()

    @router.get("/v1/offices/{code}/records")
    async def records(
        code: str, request: Request, kind: str = "license", after: int = 0, limit: int = 100
    ) -> Response:
        office = await run_in_threadpool(_office, store, request)
        if isinstance(office, Response):
            return office
        if code != office.code:
            client = request.client.host if request.client else ""
            await run_in_threadpool(_denied, store, office, code, client)
            return _problem(403, f"office {office.code} may read only its own records")
        if "pull" not in office.delivery:
            return _problem(403, f"office {office.code} is not granted the pull delivery mode")
        if kind not in ("license", "case"):
            return _problem(422, "kind must be license or case")
        # A cursor is a store row id (64-bit): a larger one would fail the query, not page.
        if not 0 <= after <= MAX_CURSOR or not 1 <= limit <= office_feed.MAX_PAGE:
            return _problem(422, f"0 <= after <= {MAX_CURSOR} and "
                                 f"1 <= limit <= {office_feed.MAX_PAGE}")  # fmt: skip
        try:
            page = await run_in_threadpool(
                office_feed.page,
                store,
                office,
                cast(RecordKind, kind),
                after=after,
                limit=limit,
            )
        except (StoreError, SQLAlchemyError) as exc:
            log.warning("office %s: the hub store is unavailable: %s", office.code, exc)
            return _problem(503, "the hub store is unavailable", **{"Retry-After": "5"})
        body: dict[str, Any] = {
            "office": office.code, "kind": kind, "items": [i.as_dict() for i in page.items],
            "next": page.next, "more": page.more,
        }  # fmt: skip
        return JSONResponse(body)

    return router
