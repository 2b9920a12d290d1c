"""The office portal: a grassroots office's clerk browses and downloads its returned records.

A clerk logs in at ``/portal/login`` with the office's code and one of its
credentials (``ehub office add`` / ``issue_credential``), then sees
``/portal/offices/<code>/records``: the office's records of one kind at a time,
filtered by license type, publication date (the day, Beijing time, the record
version was stored at the hub: the order of the cursor, as ``ehub office
export --since``) and identifier, a page at a time behind a cursor; and
downloads the same selection from ``/portal/offices/<code>/export`` as CSV or
XLSX. Every record comes from :mod:`ehub.office_feed`, that is exactly as the
office may see it (its fields only, masked); this module never reads a record
document itself.

The session is a cookie signed with HMAC-SHA256 (:mod:`ehub.portal_session`;
HttpOnly, SameSite=Strict, path ``/portal``, with an expiry inside the signed
value), naming the office and the credential used; both are checked against the
store on every request, so revoking the credential or the office ends the
session. The login form carries a nonce bound to a cookie, so another site
cannot log a browser in. Failed logins are limited per client address and
office code (:class:`~ehub.portal_session.LoginThrottle`: 429 with Retry-After).
The signing secret comes from ``EHUB_PORTAL_SECRET`` or, failing that, a file generated in the hub
home (:func:`portal_secret`); it is never in the repository. A request for
another office's code gets a 403 page and the ``office_access_denied`` audit
event (as the pull API writes it, with ``channel: portal``); each download
writes ``office_portal_export`` (kind, format, row count, filters). Credentials,
cookies and record contents are never logged.
"""

from __future__ import annotations

import csv
import hmac
import json
import logging
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from starlette.background import BackgroundTask

from ehub import codelists, office_feed, portal_pages
from ehub.audit import Event, append
from ehub.errors import HubError, StoreError
from ehub.offices import Office, RecordKind
from ehub.portal_session import (
    LoginThrottle,
    SessionCodec,
    check_login,
    portal_secret,
    session_office,
)
from ehub.store.db import Store
from ehub.store.models import CaseRow, LicenseRow

log = logging.getLogger(__name__)

__all__ = [
    "SESSION_COOKIE",
    "FilterError",
    "Filters",
    "SessionCodec",
    "create_router",
    "matches",
    "parse_filters",
    "portal_secret",
]  # fmt: skip

SESSION_COOKIE = "ehub_portal"
LOGIN_COOKIE = "ehub_portal_login"
#: The zone the clerks' dates are in.
BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")
_MAX_FORM = 4096
#: Where a login may send the browser on: a portal page of this server, nothing else.
_LOCAL_NEXT = re.compile(r"/portal/[A-Za-z0-9._~/?&=%+-]*")
_PUBLISHED = "published_at"


class FilterError(HubError):
    """A filter of the records page is invalid; ``field`` names the query parameter."""

    def __init__(self, field: str, message_zh: str) -> None:
        self.field = field
        self.message_zh = message_zh
        super().__init__(f"{field}: {message_zh}")


@dataclass(frozen=True, slots=True)
class Filters:
    kind: RecordKind
    license_type: str = ""
    date_from: date | None = None
    date_to: date | None = None
    """Inclusive, Beijing time."""
    q: str = ""
    """Part of the identifier (证照标识 / 办件编号), case-insensitive."""

    def query(self) -> dict[str, str]:
        """The filters as query parameters (for links)."""
        return {"kind": self.kind, "type": self.license_type,
                "from": self.date_from.isoformat() if self.date_from else "",
                "to": self.date_to.isoformat() if self.date_to else "", "q": self.q}  # fmt: skip


def _date(params: Mapping[str, str], name: str, label: str) -> date | None:
    text = params.get(name, "").strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise FilterError(name, f"{label}不是有效日期（应为 YYYY-MM-DD）：{text[:40]}") from exc


def parse_filters(office: Office, params: Mapping[str, str]) -> Filters:
    """The filters of a request, checked against what the office is granted."""
    kinds = sorted(office.kinds)
    kind = params.get("kind", "").strip() or ("license" if "license" in kinds else kinds[0])
    if kind not in office.kinds:
        raise FilterError("kind", f"本办公室未获授权接收该类记录：{kind[:40]}")
    ltype = params.get("type", "").strip()
    if ltype and kind != "license":
        ltype = ""  # the license type does not apply to case records
    if ltype and office.license_types and ltype not in office.license_types:
        raise FilterError("type", f"本办公室未获授权接收该证照类型：{ltype[:40]}")
    if ltype and not office.license_types and ltype not in codelists.load("license_types"):
        raise FilterError("type", f"未知的证照类型代码：{ltype[:40]}")
    start, end = _date(params, "from", "起始日期"), _date(params, "to", "截止日期")
    if start and end and start > end:
        raise FilterError("to", "截止日期早于起始日期")
    q = params.get("q", "").strip()
    if len(q) > 120:
        raise FilterError("q", "标识查询过长（最多 120 个字符）")
    return Filters(cast(RecordKind, kind), ltype, start, end, q)


def _utc_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=BEIJING).astimezone(UTC)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)  # SQLite gives naive UTC


def _stored_at(store: Store, kind: RecordKind, ids: list[int]) -> dict[int, datetime]:
    model: Any = LicenseRow if kind == "license" else CaseRow
    with store.session() as s:
        rows = s.execute(select(model.id, model.created_at).where(model.id.in_(ids))).all()
    return {int(i): _aware(at) for i, at in rows}


def matches(
    store: Store, office: Office, f: Filters, *, after: int = 0
) -> Iterator[tuple[office_feed.Item, datetime]]:
    """The office's records (as :func:`office_feed.page` gives them) matching ``f``,
    after the cursor ``after``, in cursor order, each with its publication time."""
    scoped = office
    if f.license_type:  # the type goes into the store query: the office sees one type
        scoped = replace(office, license_types=frozenset({f.license_type}))
    since = _utc_start(f.date_from) if f.date_from else None
    until = _utc_start(f.date_to + timedelta(days=1)) if f.date_to else None
    needle = f.q.casefold()
    cursor = after
    while True:
        p = office_feed.page(store, scoped, f.kind, after=cursor, limit=office_feed.MAX_PAGE,
                             since=since)  # fmt: skip
        if p.unroutable:
            log.warning("office %s portal: %d unroutable records skipped", office.code,
                        p.unroutable)  # fmt: skip
        stored = _stored_at(store, f.kind, [i.cursor for i in p.items]) if p.items else {}
        for item in p.items:
            at = stored[item.cursor]
            if until is not None and at >= until:
                continue
            if needle and needle not in item.identifier.casefold():
                continue
            yield item, at
        if not p.more:
            return
        cursor = p.next


def _row(item: office_feed.Item, at: datetime) -> dict[str, Any]:
    # The same flattening as `ehub office export`, the kind in Chinese, and the
    # publication time.
    row = office_feed._flat(item)
    row["kind"] = portal_pages.KIND_ZH.get(item.kind, item.kind)
    row[_PUBLISHED] = at.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")
    return row


def labels() -> dict[str, str]:
    """Column headers: :func:`office_feed.field_labels`, the surface fields' labels
    from the license templates, and the publication time."""
    from ehub.templates import templates

    out = office_feed.field_labels()
    for t in templates().values():
        for code, label in t.fields:
            out.setdefault(f"KZ.{code}", label)
    out[_PUBLISHED] = "发布时间"
    return out


def _columns(rows: Iterable[Mapping[str, Any]], names: Mapping[str, str]) -> list[str]:
    """Every key of the rows, in a stable order whatever the rows: identity columns and
    the fields in schema order (``names`` is in that order), surface fields where the
    ``KZ`` object is, in order of appearance, the publication time last."""
    order = {k: n for n, k in enumerate(names)}
    seen: dict[str, int] = {}
    for r in rows:
        for c in r:
            seen.setdefault(c, len(seen))

    def key(c: str) -> tuple[int, int, int]:
        if c == _PUBLISHED:
            return (len(order) + 1, 0, 0)
        base = "KZ" if c.startswith("KZ.") else c
        return (order.get(base, len(order)), int(base != c), seen[c])

    return sorted(seen, key=key)


def _write_export(
    rows: Iterator[dict[str, Any]], fmt: str, folder: Path, names: Mapping[str, str]
) -> tuple[Path, int]:
    """Spool the rows to disk (memory stays flat), then write the file with every column."""
    spool = folder / "rows.jsonl"
    keys: dict[str, None] = {}
    n = 0
    with spool.open("w", encoding="utf-8") as fh:
        for r in rows:
            keys.update(dict.fromkeys(r))
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
            n += 1
    columns = _columns([keys], names)
    header = [names.get(c, c) for c in columns]

    def body() -> Iterator[list[Any]]:
        with spool.open(encoding="utf-8") as fh:
            for line in fh:
                r = json.loads(line)
                yield [office_feed._cell(r.get(c)) for c in columns]

    out = folder / f"export.{fmt}"
    if fmt == "csv":
        with out.open("w", encoding="utf-8-sig", newline="") as fh:  # Excel reads it as UTF-8
            w = csv.writer(fh)
            w.writerow(header)
            w.writerows(body())
    else:
        from openpyxl import Workbook

        wb = Workbook(write_only=True)
        ws = wb.create_sheet("返还数据")
        ws.append(header)
        for cells in body():
            ws.append(cells)
        wb.save(out)
    return out, n


def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = portal_pages.CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"  # masked, but still personal data
    return response


def _page(body: str, status: int = 200) -> Response:
    return _headers(HTMLResponse(body, status_code=status))


def _client(request: Request) -> str:
    return request.client.host if request.client else ""


def create_router(
    store: Store,
    secret: bytes | str,
    *,
    page_size: int = 50,
    session_max_age_s: int = 8 * 3600,
    throttle: LoginThrottle | None = None,
) -> APIRouter:
    """The portal's routes (include them in the hub's web app). ``throttle``: the
    failed-login limit (default: 10 per client and office code in 15 minutes)."""
    throttle = throttle or LoginThrottle()
    codec = SessionCodec(secret.encode() if isinstance(secret, str) else secret,
                         max_age_s=session_max_age_s)  # fmt: skip
    names = labels()
    type_names = {e.code: e.zh for e in codelists.load("license_types")}
    router = APIRouter(include_in_schema=False)

    def to_login(request: Request) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        r = RedirectResponse(f"/portal/login?next={quote(target, safe='')}", status_code=303)
        r.delete_cookie(SESSION_COOKIE, path="/portal")
        return _headers(r)

    def current(request: Request) -> Office | None:
        value = request.cookies.get(SESSION_COOKIE, "")
        session = codec.loads(value) if value else None
        return session_office(store, *session) if session else None

    def guard(request: Request, code: str) -> Office | Response:
        """The logged-in office if it may see ``code``'s records, else the answer to give."""
        try:
            office = current(request)
        except (StoreError, SQLAlchemyError) as exc:
            log.warning("office portal: the hub store is unavailable: %s", exc)
            return _page(
                portal_pages.message_page("服务暂不可用", "数据库暂不可用，请稍后再试。"), 503
            )
        if office is None:
            return to_login(request)
        if code != office.code:
            log.warning("office %s asked the portal for office %s: refused", office.code, code)
            with store.session() as s:
                append(s, [Event("office_access_denied", office.code, None,
                                 {"asked_for": code, "client": _client(request),
                                  "channel": "portal"})])  # fmt: skip
            own = f"/portal/offices/{office.code}/records"
            return _page(portal_pages.message_page(
                "无权访问", "本办公室只能查看本辖区返还的数据。", office=office.name, link=own), 403)  # fmt: skip
        return office

    def form_for(office: Office, values: Mapping[str, str]) -> portal_pages.FilterForm:
        codes = sorted(office.license_types) if office.license_types else sorted(type_names)
        types = [(c, type_names.get(c, c)) for c in codes] if "license" in office.kinds else []
        return portal_pages.FilterForm(sorted(office.kinds), types, values)

    def params(request: Request) -> dict[str, str]:
        return {k: v for k, v in request.query_params.items()}

    @router.get("/portal")
    def root() -> Response:
        return _headers(RedirectResponse("/portal/login", status_code=303))

    @router.get("/portal/login")
    def login_form(request: Request, next: str = "") -> Response:
        nonce = secrets.token_urlsafe(16)
        r = _page(portal_pages.login_page(nonce=nonce, next_url=next))
        r.set_cookie(LOGIN_COOKIE, nonce, max_age=1800, path="/portal", httponly=True,
                     samesite="strict", secure=request.url.scheme == "https")  # fmt: skip
        return r

    @router.post("/portal/login")
    async def login(request: Request) -> Response:
        raw = await request.body()
        if len(raw) > _MAX_FORM:
            return _page(portal_pages.message_page("请求过大", "登录表单过大。"), 413)
        form = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
        code, token = form.get("code", "").strip(), form.get("credential", "").strip()
        nonce, next_url = form.get("nonce", ""), form.get("next", "")
        expected = request.cookies.get(LOGIN_COOKIE, "")

        def again(error: str, status: int) -> Response:
            fresh = secrets.token_urlsafe(16)
            r = _page(portal_pages.login_page(nonce=fresh, code=code, error=error,
                                              next_url=next_url), status)  # fmt: skip
            r.set_cookie(LOGIN_COOKIE, fresh, max_age=1800, path="/portal", httponly=True,
                         samesite="strict", secure=request.url.scheme == "https")  # fmt: skip
            return r

        if not expected or not hmac.compare_digest(nonce.encode(), expected.encode()):
            return again("登录页面已过期，请重新登录。", 400)
        wait = throttle.retry_after(_client(request), code)
        if wait:
            log.warning("office portal: login for office code %r from %s throttled (%d s)",
                        code[:64], _client(request), wait)  # fmt: skip
            r = again(f"登录失败次数过多，请 {max(1, wait // 60)} 分钟后再试。", 429)
            r.headers["Retry-After"] = str(wait)
            return r
        try:
            office, cred_id, why = await _in_thread(check_login, store, code, token)
        except (StoreError, SQLAlchemyError) as exc:
            log.warning("office portal login: the hub store is unavailable: %s", exc)
            return again("数据库暂不可用，请稍后再试。", 503)
        if office is None:
            throttle.failed(_client(request), code)
            log.warning("office portal: login refused for office code %r (%s)", code[:64], why)
            if why == "revoked":
                return again("该办公室或凭证已被停用，请联系平台管理员。", 403)
            return again("办公室代码或凭证不正确。", 401)
        throttle.succeeded(_client(request), code)
        own = f"/portal/offices/{office.code}/records"
        target = next_url if _LOCAL_NEXT.fullmatch(next_url) and "//" not in next_url else own
        r = RedirectResponse(target, status_code=303)
        r.set_cookie(SESSION_COOKIE, codec.dumps(office.code, cred_id), max_age=codec.max_age_s,
                     path="/portal", httponly=True, samesite="strict",
                     secure=request.url.scheme == "https")  # fmt: skip
        r.delete_cookie(LOGIN_COOKIE, path="/portal")
        log.info("office portal: office %s logged in", office.code)
        return _headers(r)

    @router.get("/portal/logout")
    def logout() -> Response:
        r = RedirectResponse("/portal/login", status_code=303)
        r.delete_cookie(SESSION_COOKIE, path="/portal")
        return _headers(r)

    @router.get("/portal/offices/{code}/records")
    def records(code: str, request: Request, after: int = 0) -> Response:
        office = guard(request, code)
        if isinstance(office, Response):
            return office
        values = params(request)
        action = f"/portal/offices/{office.code}/records"
        export_url = f"/portal/offices/{office.code}/export"
        label = f"{office.name}（{office.code}）"
        try:
            f = parse_filters(office, values)
        except FilterError as exc:
            form = form_for(
                office, {k: values.get(k, "") for k in ("kind", "type", "from", "to", "q")}
            )
            return _page(portal_pages.records_page(
                office_label=label, action=action, export_url=export_url, form=form,
                columns=[], rows=[], next_after=None, first_page=True, error=exc.message_zh), 422)  # fmt: skip
        found: list[tuple[office_feed.Item, datetime]] = []
        try:
            for hit in matches(store, office, f, after=max(after, 0)):
                found.append(hit)
                if len(found) > page_size:
                    break
        except (StoreError, SQLAlchemyError) as exc:
            log.warning("office %s portal: the hub store is unavailable: %s", office.code, exc)
            return _page(
                portal_pages.message_page("服务暂不可用", "数据库暂不可用，请稍后再试。"), 503
            )
        shown = found[:page_size]
        rows = [_row(item, at) for item, at in shown]
        columns = [(c, names.get(c, c)) for c in _columns(rows, names)]
        next_after = shown[-1][0].cursor if len(found) > page_size else None
        return _page(portal_pages.records_page(
            office_label=label, action=action, export_url=export_url,
            form=form_for(office, f.query()), columns=columns, rows=rows,
            next_after=next_after, first_page=after <= 0))  # fmt: skip

    @router.get("/portal/offices/{code}/export")
    def export(code: str, request: Request, format: str = "csv") -> Response:
        office = guard(request, code)
        if isinstance(office, Response):
            return office
        link = f"/portal/offices/{office.code}/records"
        if format not in ("csv", "xlsx"):
            return _page(portal_pages.message_page("格式无效", "下载格式只能是 CSV 或 XLSX。",
                                                   office=office.name, link=link), 422)  # fmt: skip
        try:
            f = parse_filters(office, params(request))
        except FilterError as exc:
            return _page(portal_pages.message_page("查询条件无效", exc.message_zh,
                                                   office=office.name, link=link), 422)  # fmt: skip
        folder = Path(tempfile.mkdtemp(prefix="ehub-portal-"))
        try:
            path, n = _write_export((_row(i, at) for i, at in matches(store, office, f)),
                                    format, folder, names)  # fmt: skip
            with store.session() as s:
                append(s, [Event("office_portal_export", office.code, None,
                                 {"kind": f.kind, "format": format, "rows": n,
                                  "filters": {k: v for k, v in f.query().items() if v}})])  # fmt: skip
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        log.info("office portal: office %s exported %d %s records as %s", office.code, n,
                 f.kind, format)  # fmt: skip
        stamp = datetime.now(BEIJING).strftime("%Y%m%d-%H%M%S")
        media = ("text/csv; charset=utf-8" if format == "csv" else
                 "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")  # fmt: skip
        r = FileResponse(path, media_type=media, filename=f"{office.code}-{f.kind}-{stamp}.{format}",
                         background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True))  # fmt: skip
        return _headers(r)

    return router


async def _in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    from fastapi.concurrency import run_in_threadpool

    return await run_in_threadpool(fn, *args)
