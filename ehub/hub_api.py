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

import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from ehub import deliveries, indicators, quarantine
from ehub.config import Settings
from ehub.errors import ConfigError, StoreError
from ehub.lineage import trace
from ehub.offices import Office, list_offices
from ehub.routing import view_for
from ehub.store.db import Store
from ehub.store.models import CaseRow, LicenseRow, SealRow, SignatureRow, Source

log = logging.getLogger(__name__)

TOKENS_ENV = "EHUB_API_TOKENS"
COOKIE = "ehub_operator"
MAX_PAGE = 500
_DIGEST = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")

#: Who reads records through this API: every field, personal data masked by the
#: hub's default policy (the office machinery's view, with no office's overrides).
OPERATOR_VIEW = Office(
    code="ehub-operators", name="枢纽运维", division="370100", level="city",
    kinds=frozenset({"license", "case"}), fields={"license": {"*"}, "case": {"*"}},
)  # fmt: skip


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(name: str) -> tuple[str, str]:
    """A new operator token and its ``EHUB_API_TOKENS`` entry (``name:digest``)."""
    if not _NAME.fullmatch(name):
        raise ConfigError(f"operator name {name!r}: use 1-64 of A-Z a-z 0-9 _ . @ -")
    token = "ehop_" + secrets.token_urlsafe(32)
    return token, f"{name}:{token_digest(token)}"


def dev_operator_token(home: Path) -> tuple[str, str]:
    """The dev stack's operator token (made once, kept in ``<home>/operator_token``, mode
    0600) and its ``EHUB_API_TOKENS`` entry; production configures its own tokens."""
    path = home / "operator_token"
    if not path.exists():
        token, _entry = new_token("dev-operator")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
    token = path.read_text().strip()
    return token, f"dev-operator:{token_digest(token)}"


@dataclass(frozen=True, slots=True)
class OperatorTokens:
    """The operators' token digests: digest → operator name."""

    digests: Mapping[str, str]

    @classmethod
    def parse(cls, text: str, *, origin: str = TOKENS_ENV) -> OperatorTokens:
        """``name:digest`` entries separated by commas or whitespace; a bare digest is
        named after its position. A malformed entry is refused naming its position."""
        out: dict[str, str] = {}
        for n, entry in enumerate(e for e in re.split(r"[,\s]+", text.strip()) if e):
            name, _, digest = entry.rpartition(":")
            name = name or f"operator{n + 1}"
            digest = digest.lower()
            if not _DIGEST.fullmatch(digest) or not _NAME.fullmatch(name):
                raise ConfigError(
                    f"{origin}: entry {n + 1} is not name:sha256-hex-digest "
                    "(64 hex digits; the token's digest, never the token)"
                )
            out[digest] = name
        return cls(out)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorTokens:
        return cls.parse((env if env is not None else os.environ).get(TOKENS_ENV, ""))

    def operator(self, token: str) -> str | None:
        """The operator holding ``token`` (constant-time comparison), or None."""
        digest = token_digest(token)
        found = None
        for known, name in self.digests.items():
            if hmac.compare_digest(known, digest):
                found = name
        return found


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


_bearer = HTTPBearer(auto_error=False, description="an operator token (EHUB_API_TOKENS)")


def _operator(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The operator whose token came as a bearer token (or in the sign-in cookie); 401 else."""
    known: OperatorTokens = request.app.state.operator_tokens
    token = credentials.credentials if credentials else request.cookies.get(COOKIE, "")
    name = known.operator(token) if token else None
    if name is None:
        raise HTTPException(401, "give an operator token as a bearer token",
                            headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
    return name


Operator = Annotated[str, Depends(_operator)]


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
    def metrics(_: Operator) -> PlainTextResponse:
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
        _: Operator,
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
        with get_store().session() as s:
            items = [_license_summary(r) for r in s.scalars(stmt)]
        return {"items": items, "next": items[-1]["cursor"] if items else after,
                "more": len(items) == limit}  # fmt: skip

    @app.get("/api/v1/licenses/{identifier}", tags=["records"])
    def license_(identifier: str, _: Operator) -> dict[str, Any]:
        """Every version of a license, its document masked, with its signatures."""
        with get_store().session() as s:
            rows = list(s.scalars(select(LicenseRow).where(LicenseRow.identifier == identifier)
                                  .order_by(LicenseRow.version)))  # fmt: skip
            if not rows:
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
        _: Operator, after: int = 0, limit: int = 100, division: str | None = None
    ) -> dict[str, Any]:
        """Case record versions in store order; ``division`` keeps a division and its parts."""
        _page_args(after, limit)
        stmt = select(CaseRow).where(CaseRow.id > after).order_by(CaseRow.id).limit(limit)
        if division:
            stmt = stmt.where(CaseRow.division.startswith(division.rstrip("0") or division))
        with get_store().session() as s:
            items = [_case_summary(r) for r in s.scalars(stmt)]
        return {"items": items, "next": items[-1]["cursor"] if items else after,
                "more": len(items) == limit}  # fmt: skip

    @app.get("/api/v1/cases/{case_number}", tags=["records"])
    def case_(case_number: str, _: Operator) -> dict[str, Any]:
        """Every version of a case record, the applicant masked."""
        with get_store().session() as s:
            rows = list(s.scalars(select(CaseRow).where(CaseRow.case_number == case_number)
                                  .order_by(CaseRow.version)))  # fmt: skip
            if not rows:
                raise HTTPException(404, f"no case record {case_number}")
            versions = [{**_case_summary(r), "document": view_for(OPERATOR_VIEW, "case", r.document)}
                        for r in rows]  # fmt: skip
        return {"case_number": case_number, "versions": versions}

    @app.get("/api/v1/quarantine", tags=["quarantine"])
    def quarantined(
        _: Operator,
        after: int = 0,
        limit: int = 100,
        source: str | None = None,
        department: str | None = None,
        reason: str | None = None,
        state: Annotated[str, Query(pattern="^(open|retried|resolved|all)$")] = "open",
    ) -> dict[str, Any]:
        """Quarantine rows (one per defect), values masked; ``state=all`` for every state."""
        _page_args(after, limit)
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
    def quarantine_counts(_: Operator, department: str | None = None) -> dict[str, Any]:
        """Open quarantine per source and reason: records and defects."""
        rows = quarantine.counts(get_store(), department=department)
        return {"items": [{**asdict(r), "reason_zh": indicators.reason_name(r.reason_code)}
                          for r in rows]}  # fmt: skip

    @app.get("/api/v1/seals", tags=["seals"])
    def seals(_: Operator, department_uscc: str | None = None) -> dict[str, Any]:
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
    def delivery_status(_: Operator) -> dict[str, Any]:
        """Outbox rows per platform, kind and state (with the oldest row's age)."""
        rows = deliveries.status(get_store())
        return {"items": [{**asdict(r), "oldest": r.oldest.isoformat() if r.oldest else None}
                          for r in rows]}  # fmt: skip

    @app.get("/api/v1/deliveries/letters", tags=["deliveries"])
    def delivery_letters(
        _: Operator,
        state: Annotated[str, Query(pattern="^(dead|rejected)$")] = "dead",
        destination: str | None = None,
        limit: int = 100,
    ) -> dict[str, Any]:
        """Dead letters (failed every attempt) or rejected deliveries, oldest first."""
        _page_args(0, limit)
        rows = deliveries.letters(get_store(), state=state, destination=destination, limit=limit)
        return {"items": [{**asdict(r), "created_at": r.created_at.isoformat()} for r in rows]}

    @app.get("/api/v1/reconciliations", tags=["deliveries"])
    def reconciliations(_: Operator, limit: int = 90) -> dict[str, Any]:
        """The newest reconciliation outcomes per business day, platform and kind."""
        _page_args(0, limit)
        rows = indicators.reconciliations(get_store(), limit=limit)
        return {"items": [{**asdict(r), "at": r.at.isoformat()} for r in rows]}

    @app.get("/api/v1/offices", tags=["offices"])
    def offices(_: Operator) -> dict[str, Any]:
        """Registered offices, their grants and the freshness of their return feeds."""
        store = get_store()
        lag = {o.office: o for o in indicators.feed_lag(store)}
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
    def lineage(identifier: str, _: Operator) -> dict[str, Any]:
        """The story of a license, case record, seal or ``source/key`` (as ``ehub trace``)."""
        story = trace(get_store(), identifier)
        if not story.found:
            raise HTTPException(404, f"nothing known about {identifier}")
        return story.as_dict()

    @app.get("/api/v1/indicators", tags=["indicators"])
    def indicators_(
        _: Operator, department: str = "", license_type: str = "", days: str = "30"
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
            "platforms": rows(indicators.platforms(store, f), "delivered_share"),
            "feed_lag": rows(indicators.feed_lag(store)),
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
        if not token or known.operator(token) is None:
            return HTMLResponse(dashboard.login_page(), status_code=401)
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
