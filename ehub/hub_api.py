"""The hub's operators' API and dashboard (FastAPI), read-only.

:func:`create_app` builds the app without Airflow: the plugin
(``plugins/ehub_plugin.py``) mounts it at ``/ehub`` inside the Airflow API server,
and tests run it on their own. Endpoints (all ``GET``, JSON, under ``/api/v1``):

===========================================  ==============================================
``/licenses``, ``/licenses/{identifier}``    license versions, paged by cursor; one license
``/cases``, ``/cases/{case_number}``          case records, paged; one case record
``/quarantine``, ``/quarantine/counts``       quarantined records (values masked); counts
``/seals``                                    the seal registry (no keys, no certificates)
``/deliveries``, ``/deliveries/letters``      outbox counts per platform; dead or rejected rows
``/reconciliations``                          reconciliation outcomes per day and platform
``/offices``                                  offices and the freshness of their feeds
``/lineage/{identifier}``                     the story of a record (``ehub trace``)
``/indicators``                               the national indicators and the breakdowns
===========================================  ==============================================

plus ``/dashboard`` (the 数字驾驶舱 page, :mod:`ehub.dashboard`), ``/login`` and
``/logout`` for browsers, ``/healthz`` and the OpenAPI document ``/openapi.json``.

**Authentication.** Every endpoint but ``/healthz``, ``/login`` and the OpenAPI
document needs an operator's bearer token. Tokens are configured as SHA-256
digests in ``EHUB_API_TOKENS`` (``name:hexdigest`` entries separated by commas;
:func:`new_token` makes one), so no token is ever stored; a missing or unknown
token gets ``401``. A browser signs in once on ``/login``; the token then travels
in an ``HttpOnly``, ``SameSite=Strict`` cookie. Personal data in records is
masked as in the return feeds' default policy (:func:`ehub.routing.view_for`).

The store is opened at the first request, so building the app (importing the
Airflow plugin) needs no database.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from ehub import deliveries, indicators, indicators_ops, quarantine
from ehub.config import Settings
from ehub.errors import ConfigError, StoreError
from ehub.hub_auth import (
    COOKIE,
    TOKENS_ENV,
    Operator,
    OperatorTokens,
    ProvinceOperator,
    department_of,
    in_department,
    new_token,
)
from ehub.lineage import trace
from ehub.offices import Office, list_offices
from ehub.routing import view_for
from ehub.store.db import Store
from ehub.store.models import CaseRow, LicenseRow, SealRow, SignatureRow, Source

log = logging.getLogger(__name__)

MAX_PAGE = 500

#: Who reads records through this API: every field, personal data masked by the
#: hub's default policy (the office machinery's view, with no office's overrides).
OPERATOR_VIEW = Office(
    code="ehub-operators", name="枢纽运维", division="370100", level="city",
    kinds=frozenset({"license", "case"}), fields={"license": {"*"}, "case": {"*"}},
)  # fmt: skip


class _LazyStore:
    """The store, opened at first use (importing the plugin needs no database)."""

    def __init__(self, url: str, store: Store | None) -> None:
        self._url, self._store = url, store
        self._lock = threading.Lock()

    def __call__(self) -> Store:
        with self._lock:
            if self._store is None:
                self._store = Store(self._url)
            return self._store


def _page_args(after: int, limit: int) -> None:
    if after < 0 or not 1 <= limit <= MAX_PAGE:
        raise HTTPException(422, f"after >= 0 and 1 <= limit <= {MAX_PAGE}")


def _license_summary(row: Any) -> dict[str, Any]:
    return {"cursor": row.id, "identifier": row.identifier, "version": row.version,
            "type_code": row.type_code, "type_name": indicators.type_name(row.type_code),
            "status": row.status, "state": row.state, "issuer_code": row.issuer_code,
            "county": row.county, "source": row.source_id,
            "created_at": row.created_at.isoformat()}  # fmt: skip


def _case_summary(row: Any) -> dict[str, Any]:
    return {"cursor": row.id, "case_number": row.case_number, "version": row.version,
            "division": row.division, "source": row.source_id,
            "created_at": row.created_at.isoformat()}  # fmt: skip


def create_app(
    settings: Settings,
    *,
    tokens: OperatorTokens | None = None,
    store: Store | None = None,
) -> FastAPI:
    """The operators' API and dashboard over the store at ``settings.database_url``
    (or ``store``); tokens default to ``EHUB_API_TOKENS``."""
    from ehub import dashboard

    known = tokens if tokens is not None else OperatorTokens.from_env()
    if not known.digests:
        log.warning("hub API: %s is empty; every authenticated request is refused", TOKENS_ENV)
    get_store = _LazyStore(settings.database_url, store)
    app = FastAPI(
        title="ehub 枢纽运维接口 (operators' API)",
        version="1",
        description=(__doc__ or "").split("\n\n")[0],
        docs_url=None,  # the interactive pages load scripts from a CDN: not here
        redoc_url=None,
    )
    app.state.operator_tokens = known

    @app.exception_handler(StoreError)
    @app.exception_handler(SQLAlchemyError)
    async def unavailable(_request: Request, exc: Exception) -> JSONResponse:
        log.warning("hub API: the hub store is unavailable: %s", exc)
        return JSONResponse({"detail": "the hub store is unavailable"}, status_code=503,
                            headers={"Retry-After": "5"})  # fmt: skip

    @app.get("/healthz", tags=["service"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", tags=["service"], response_class=PlainTextResponse)
    def metrics(_: ProvinceOperator) -> PlainTextResponse:
        """Prometheus text format: counts, lags and errors read from the store
        (:mod:`ehub.metrics`); scrape with an operator token."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        from ehub.metrics import registry_for

        if getattr(app.state, "metrics_registry", None) is None:
            app.state.metrics_registry = registry_for(get_store())
        return PlainTextResponse(generate_latest(app.state.metrics_registry),
                                 media_type=CONTENT_TYPE_LATEST)  # fmt: skip

    @app.get("/api/v1/licenses", tags=["records"])
    def licenses(
        op: Operator,
        after: int = 0,
        limit: int = 100,
        type_code: str | None = None,
        state: str | None = None,
        department: str | None = None,
    ) -> dict[str, Any]:
        """License versions in store order (``after``: the ``next`` of the previous page)."""
        _page_args(after, limit)
        stmt = select(LicenseRow).where(LicenseRow.id > after).order_by(LicenseRow.id).limit(limit)
        if type_code:
            stmt = stmt.where(LicenseRow.type_code == type_code)
        if state:
            stmt = stmt.where(LicenseRow.state == state)
        if department:
            stmt = stmt.join(Source, Source.id == LicenseRow.source_id).where(
                Source.department == department
            )
        if (dept := department_of(op)) is not None:
            stmt = stmt.where(LicenseRow.source_id.startswith(dept + ".", autoescape=True))
        with get_store().session() as s:
            items = [_license_summary(r) for r in s.scalars(stmt)]
        return {"items": items, "next": items[-1]["cursor"] if items else after,
                "more": len(items) == limit}  # fmt: skip

    @app.get("/api/v1/licenses/{identifier}", tags=["records"])
    def license_(identifier: str, op: Operator) -> dict[str, Any]:
        """Every version of a license, its document masked, with its signatures."""
        with get_store().session() as s:
            rows = list(s.scalars(select(LicenseRow).where(LicenseRow.identifier == identifier)
                                  .order_by(LicenseRow.version)))  # fmt: skip
            if not rows or not in_department(rows[0].source_id, op):
                raise HTTPException(404, f"no license {identifier}")
            versions = []
            for r in rows:
                sigs = s.execute(
                    select(SignatureRow.format, SignatureRow.level, SignatureRow.signed_at,
                           SealRow.code)
                    .join(SealRow, SealRow.id == SignatureRow.seal_id)
                    .where(SignatureRow.license_id == r.id)
                ).all()  # fmt: skip
                versions.append({**_license_summary(r), "state_reason": r.state_reason,
                                 "document": view_for(OPERATOR_VIEW, "license", r.document),
                                 "signatures": [{"format": f, "level": lv, "seal": c,
                                                 "signed_at": at.isoformat()}
                                                for f, lv, at, c in sigs]})  # fmt: skip
        return {"identifier": identifier, "versions": versions}

    @app.get("/api/v1/cases", tags=["records"])
    def cases(
        op: Operator, after: int = 0, limit: int = 100, division: str | None = None
    ) -> dict[str, Any]:
        """Case record versions in store order; ``division`` keeps a division and its parts."""
        _page_args(after, limit)
        stmt = select(CaseRow).where(CaseRow.id > after).order_by(CaseRow.id).limit(limit)
        if division:
            stmt = stmt.where(CaseRow.division.startswith(division.rstrip("0") or division))
        if (dept := department_of(op)) is not None:
            stmt = stmt.where(CaseRow.source_id.startswith(dept + ".", autoescape=True))
        with get_store().session() as s:
            items = [_case_summary(r) for r in s.scalars(stmt)]
        return {"items": items, "next": items[-1]["cursor"] if items else after,
                "more": len(items) == limit}  # fmt: skip

    @app.get("/api/v1/cases/{case_number}", tags=["records"])
    def case_(case_number: str, op: Operator) -> dict[str, Any]:
        """Every version of a case record, the applicant masked."""
        with get_store().session() as s:
            rows = list(s.scalars(select(CaseRow).where(CaseRow.case_number == case_number)
                                  .order_by(CaseRow.version)))  # fmt: skip
            if not rows or not in_department(rows[0].source_id, op):
                raise HTTPException(404, f"no case record {case_number}")
            versions = [{**_case_summary(r), "document": view_for(OPERATOR_VIEW, "case", r.document)}
                        for r in rows]  # fmt: skip
        return {"case_number": case_number, "versions": versions}

    @app.get("/api/v1/quarantine", tags=["quarantine"])
    def quarantined(
        op: Operator,
        after: int = 0,
        limit: int = 100,
        source: str | None = None,
        department: str | None = None,
        reason: str | None = None,
        state: Annotated[str, Query(pattern="^(open|retried|resolved|all)$")] = "open",
    ) -> dict[str, Any]:
        """Quarantine rows (one per defect), values masked; ``state=all`` for every state.
        A department user names one of its sources."""
        _page_args(after, limit)
        if department_of(op) is not None and not (source and in_department(source, op)):
            raise HTTPException(403, "a department user asks for one of its own sources "
                                     "(source=<id>)")  # fmt: skip
        try:
            page = quarantine.list_entries(
                get_store(), source=source, department=department, reason=reason,
                state=None if state == "all" else state,  # type: ignore[arg-type]
                after=after, limit=limit,
            )  # fmt: skip
        except ConfigError as exc:
            raise HTTPException(422, str(exc)) from exc
        items = [{**asdict(e), "fix_zh": e.fix_zh, "created_at": e.created_at.isoformat()}
                 for e in page.entries]  # fmt: skip
        return {"items": items, "next": page.next_after, "more": page.next_after is not None}

    @app.get("/api/v1/quarantine/counts", tags=["quarantine"])
    def quarantine_counts(op: Operator, department: str | None = None) -> dict[str, Any]:
        """Open quarantine per source and reason: records and defects."""
        rows = [r for r in quarantine.counts(get_store(), department=department)
                if in_department(r.source_id, op)]  # fmt: skip
        return {"items": [{**asdict(r), "reason_zh": indicators.reason_name(r.reason_code)}
                          for r in rows]}  # fmt: skip

    @app.get("/api/v1/seals", tags=["seals"])
    def seals(_: ProvinceOperator, department_uscc: str | None = None) -> dict[str, Any]:
        """The seal registry: status, scope and registration (备案) of every seal."""
        from ehub.seals import list_seals

        keep = ("code", "department", "department_uscc", "division", "name", "seal_type",
                "license_types", "cross_level", "status", "status_reason", "registration_no",
                "registered_at", "valid_from", "valid_until", "created_at")  # fmt: skip
        out = []
        for seal in list_seals(get_store(), department_uscc=department_uscc):
            item = {k: getattr(seal, k) for k in keep}
            out.append(
                {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in item.items()}
            )
        return {"items": out}

    @app.get("/api/v1/deliveries", tags=["deliveries"])
    def delivery_status(_: ProvinceOperator) -> dict[str, Any]:
        """Outbox rows per platform, kind and state (with the oldest row's age)."""
        rows = deliveries.status(get_store())
        return {"items": [{**asdict(r), "oldest": r.oldest.isoformat() if r.oldest else None}
                          for r in rows]}  # fmt: skip

    @app.get("/api/v1/deliveries/letters", tags=["deliveries"])
    def delivery_letters(
        _: ProvinceOperator,
        state: Annotated[str, Query(pattern="^(dead|rejected)$")] = "dead",
        destination: str | None = None,
        limit: int = 100,
    ) -> dict[str, Any]:
        """Dead letters (failed every attempt) or rejected deliveries, oldest first."""
        _page_args(0, limit)
        rows = deliveries.letters(get_store(), state=state, destination=destination, limit=limit)
        return {"items": [{**asdict(r), "created_at": r.created_at.isoformat()} for r in rows]}

    @app.get("/api/v1/reconciliations", tags=["deliveries"])
    def reconciliations(_: ProvinceOperator, limit: int = 90) -> dict[str, Any]:
        """The newest reconciliation outcomes per business day, platform and kind."""
        _page_args(0, limit)
        rows = indicators_ops.reconciliations(get_store(), limit=limit)
        return {"items": [{**asdict(r), "at": r.at.isoformat()} for r in rows]}

    @app.get("/api/v1/offices", tags=["offices"])
    def offices(_: ProvinceOperator) -> dict[str, Any]:
        """Registered offices, their grants and the freshness of their return feeds."""
        store = get_store()
        lag = {o.office: o for o in indicators_ops.feed_lag(store)}
        items = []
        for o in list_offices(store):
            fr = lag.get(o.code)
            items.append({
                "code": o.code, "name": o.name, "division": o.division, "level": o.level,
                "kinds": sorted(o.kinds), "license_types": sorted(o.license_types),
                "include_children": o.include_children, "delivery": sorted(o.delivery),
                "active": o.active, "feed": asdict(fr) if fr else None,
            })  # fmt: skip
        return {"items": items}

    @app.get("/api/v1/lineage/{identifier:path}", tags=["records"])
    def lineage(identifier: str, _: ProvinceOperator) -> dict[str, Any]:
        """The story of a license, case record, seal or ``source/key`` (as ``ehub trace``)."""
        story = trace(get_store(), identifier)
        if not story.found:
            raise HTTPException(404, f"nothing known about {identifier}")
        return story.as_dict()

    @app.get("/api/v1/indicators", tags=["indicators"])
    def indicators_(
        _: ProvinceOperator, department: str = "", license_type: str = "", days: str = "30"
    ) -> dict[str, Any]:
        """The national evaluation indicators and the dashboard's breakdowns."""
        store = get_store()
        f = dashboard.filters_from(department, license_type, days)

        def rows(items: Any, *props: str) -> list[dict[str, Any]]:
            return [{**_plain(asdict(i)), **{p: getattr(i, p) for p in props}} for i in items]

        return {
            "national": [i.as_dict() for i in indicators.national(store)],
            "departments": rows(indicators.by_department(store, f), "sealed_share"),
            "license_types": rows(indicators.by_license_type(store, f), "sealed_share"),
            "quarantine_reasons": rows(indicators.quarantine_reasons(store, f)),
            "daily": rows(indicators.daily(store, f)),
            "platforms": rows(indicators_ops.platforms(store, f), "delivered_share"),
            "feed_lag": rows(indicators_ops.feed_lag(store)),
        }

    @app.get("/dashboard", response_class=HTMLResponse, tags=["dashboard"])
    def dashboard_page(
        request: Request, department: str = "", license_type: str = "", days: str = "30"
    ) -> Response:
        """The dashboard page (数字驾驶舱); without a valid sign-in, the sign-in form."""
        token = request.cookies.get(COOKIE, "")
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            token = value.strip()
        name = known.operator(token) if token else None
        if name is None:
            return HTMLResponse(dashboard.login_page(), status_code=401)
        if department_of(name) is not None:
            return HTMLResponse("<p>部门用户无权查看全省数字驾驶舱。</p>", status_code=403)
        body = dashboard.render(get_store(), department=department,
                                license_type=license_type, days=days)  # fmt: skip
        return HTMLResponse(body, headers={"Cache-Control": "no-store"})

    @app.get("/login", response_class=HTMLResponse, tags=["dashboard"])
    def login_form() -> HTMLResponse:
        return HTMLResponse(dashboard.login_page())

    @app.post("/login", response_class=HTMLResponse, tags=["dashboard"])
    async def login(request: Request) -> Response:
        """Sign in with an operator token (form field ``token``)."""
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        token = (form.get("token") or [""])[0].strip()
        name = known.operator(token) if token else None
        if name is None:
            log.warning("hub dashboard: refused sign-in from %s",
                        request.client.host if request.client else "?")  # fmt: skip
            return HTMLResponse(dashboard.login_page("令牌无效，请重新输入。"), status_code=401)
        log.info("hub dashboard: operator %s signed in", name)
        response = RedirectResponse("dashboard", status_code=303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https",
                            path=_cookie_path(request))  # fmt: skip
        return response

    @app.post("/logout", tags=["dashboard"])
    def logout(request: Request) -> Response:
        response = RedirectResponse("login", status_code=303)
        response.delete_cookie(COOKIE, path=_cookie_path(request))
        return response

    return app


def _cookie_path(request: Request) -> str:
    return str(request.scope.get("root_path") or "") + "/"


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in d.items()}


def main(argv: list[str] | None = None) -> int:
    """``python -m ehub.hub_api token NAME``: print a new operator token and its entry."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "token":
        print("usage: python -m ehub.hub_api token NAME", file=sys.stderr)
        return 2
    token, entry = new_token(args[1])
    print(f"token (shown once, give it to the operator): {token}")
    print(f"add to {TOKENS_ENV}: {entry}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
