"""The office portal over generated records on SQLite and PostgreSQL: a clerk logs in with
the office's credential, pages through exactly the office's records (masked, its fields
only) under each filter, downloads the same selection as CSV and XLSX; another office's
pages are refused (403, audited); a forged, altered or expired session is refused; every
value a page shows is escaped."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from lxml import html as lxml_html
from openpyxl import load_workbook
from sqlalchemy import select

from ehub.config import Settings
from ehub.errors import ConfigError
from ehub.office_feed import field_labels
from ehub.office_portal import SESSION_COOKIE, create_router
from ehub.offices import Office, add_office, issue_credential, revoke
from ehub.portal_session import SECRET_ENV, LoginThrottle, SessionCodec, portal_secret
from ehub.reports import csv_safe
from ehub.routing import view_for
from ehub.store.db import Store
from ehub.store.models import AuditEvent, CaseRow, LicenseRow
from ehub.store.models import Source as SourceRow
from tests.ehub.test_routing import BUSINESS, CITY, COUNTY, OFFICES, TOWNSHIP, expected, generate

SECRET = secrets.token_hex(32)  # generated per run
NOT_SEALED = 1  # the generated record left unsealed: never shown
#: Stored-at times: one record every 7 hours from here (UTC), so the days of
#: Beijing time (UTC+8) cut through the data, midnight boundaries included.
T0 = datetime(2026, 3, 1, 1, 0, tzinfo=UTC)
HOSTILE_HOLDER = '<script>alert("x")</script>&"某某公司"'
FORMULA_NUMBER = '=HYPERLINK("http://example.invalid","x")'


@dataclass
class Env:
    store: Store
    tokens: dict[str, str]
    records: list[tuple[str, dict[str, Any]]]
    stored_at: list[datetime]


def stored_at(n: int) -> datetime:
    return T0 + timedelta(hours=7 * n)


def beijing_day(at: datetime) -> date:
    return (at + timedelta(hours=8)).date()


def seed(store: Store) -> tuple[dict[str, str], list[tuple[str, dict[str, Any]]]]:
    """The generated records of tests.ehub.test_routing as the stages store them (one
    license unsealed, one company license with a hostile holder name and a formula
    as its number), and the offices with their first credentials."""
    records = generate()
    company = next(n for n, (k, d) in enumerate(records)
                   if k == "license" and d["CZZTDMLXDM"] == "001"
                   and d["CZZTQHDM"].startswith("370602001"))  # fmt: skip
    records[company][1].update(CZZT=HOSTILE_HOLDER, ZZBH=FORMULA_NUMBER)
    with store.session() as s:
        for sid, kind in (("t.cases", "case"), ("t.licenses", "license")):
            s.add(SourceRow(id=sid, department="t", kind="sql", record_kind=kind,
                            created_at=T0))  # fmt: skip
        s.flush()
        for n, (kind, doc) in enumerate(records):
            if kind == "license":
                s.add(LicenseRow(identifier=doc["ZZBS"], version=1, type_code=doc["ZZLXDM"],
                                 issuer_code=doc["ZZBFJGDM"], holder_division=doc["CZZTQHDM"],
                                 county=doc["CZZTQHDM"][:6], status="valid", content_hash="h",
                                 document=doc, source_id="t.licenses", source_key=str(n),
                                 raw_id=None, created_at=stored_at(n),
                                 state="normalized" if n == NOT_SEALED else "sealed"))  # fmt: skip
            else:
                s.add(CaseRow(case_number=doc["BJBH"], version=1, division=doc["XZQHDM"],
                              content_hash="h", document=doc, source_id="t.cases",
                              source_key=str(n), raw_id=None, created_at=stored_at(n)))  # fmt: skip
    tokens: dict[str, str] = {}
    for o in OFFICES:
        _, tokens[o.code] = add_office(
            store, o.code, o.name, o.division, kinds=o.kinds, fields=o.fields,
            license_types=o.license_types, include_children=o.include_children,
            masking=o.masking,
        )  # fmt: skip
        if not o.active:
            revoke(store, o.code)
    return tokens, records


def app_for(store: Store, secret: str = SECRET, **kw: Any) -> FastAPI:
    app = FastAPI()
    app.include_router(create_router(store, secret, **kw))
    return app


def _env(url: str) -> Iterator[Env]:
    store = Store(url)
    store.migrate()
    tokens, records = seed(store)
    try:
        yield Env(store, tokens, records, [stored_at(n) for n in range(len(records))])
    finally:
        store.dispose()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    yield from _env(f"sqlite:///{tmp_path / 'hub.db'}")


@pytest.fixture
def pg_env(pg_url: str) -> Iterator[Env]:
    yield from _env(pg_url)


def want(env: Env, office: Office, kind: str, **f: Any) -> list[tuple[str, dict[str, Any]]]:
    """The office's records of ``kind`` under the filters, restated independently:
    (identifier, the record as the office may see it), in store order."""
    out = []
    for n, (k, doc) in enumerate(env.records):
        if k != kind or n == NOT_SEALED or not expected(office, k, doc):
            continue
        ident = doc["ZZBS"] if k == "license" else doc["BJBH"]
        day = beijing_day(env.stored_at[n])
        if f.get("type") and doc.get("ZZLXDM") != f["type"]:
            continue
        if f.get("from") and day < date.fromisoformat(f["from"]):
            continue
        if f.get("to") and day > date.fromisoformat(f["to"]):
            continue
        if f.get("q") and f["q"].lower() not in ident.lower():
            continue
        out.append((ident, view_for(office, k, doc)))  # type: ignore[arg-type]
    return out


def login(client: TestClient, code: str, token: str, next_url: str = "") -> Any:
    page = client.get("/portal/login")
    assert page.status_code == 200
    nonce = lxml_html.fromstring(page.text).xpath('//input[@name="nonce"]/@value')[0]
    return client.post("/portal/login", data={"code": code, "credential": token, "nonce": nonce,
                                              "next": next_url},
                       follow_redirects=False)  # fmt: skip


def table(page_html: str) -> list[dict[str, str]]:
    """The rows of the records table, each as {Chinese header: cell text}."""
    doc = lxml_html.fromstring(page_html)
    header = [th.text_content() for th in doc.xpath('//table[@id="records"]/thead/tr/th')]
    assert len(header) == len(set(header)), header
    return [dict(zip(header, (td.text_content() for td in tr.xpath("td")), strict=True))
            for tr in doc.xpath('//table[@id="records"]/tbody/tr')]  # fmt: skip


def browse(client: TestClient, office: Office, **params: str) -> list[dict[str, str]]:
    """Every row of the records page under ``params``, following 下一页 to the end."""
    url = f"/portal/offices/{office.code}/records"
    rows: list[dict[str, str]] = []
    query: dict[str, str] | None = params
    for _ in range(200):
        r = client.get(url, params=query)
        assert r.status_code == 200, r.text
        rows += table(r.text)
        nxt = lxml_html.fromstring(r.text).xpath('//a[@id="next"]/@href')
        if not nxt:
            return rows
        url, query = nxt[0], None
    raise AssertionError("paging did not end")


def cell_text(value: Any) -> str:
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else str(value)


def kz_label(code: str) -> str:
    """A surface field's header: its label in the first license template that has it."""
    from ehub.templates import templates

    found = [label for t in templates().values() for c, label in t.fields if c == code]
    return found[0] if found else f"KZ.{code}"


def check_rows(
    rows: list[dict[str, str]],
    wanted: list[tuple[str, dict[str, Any]]],
    kind: str,
    *,
    exported: bool = False,
) -> None:
    """Each row holds exactly the office's view of the wanted record under Chinese headers,
    every other cell empty (nothing beyond the view leaks into a column)."""
    labels = field_labels()
    assert [r["标识"] for r in rows] == [i for i, _ in wanted]
    for row, (ident, view) in zip(rows, wanted, strict=True):
        cells = {"类别": {"license": "证照", "case": "办件"}[kind], "标识": ident, "版本": "1"}
        for code, value in view.items():
            if code == "KZ" and isinstance(value, dict):
                cells.update({kz_label(k): cell_text(v) for k, v in value.items()})
            else:
                cells[labels.get(code, code)] = cell_text(value)
        if exported:
            cells = {k: csv_safe(v) for k, v in cells.items()}
        assert set(cells) <= set(row), (ident, set(cells) - set(row))
        for h, got in row.items():
            if h in ("行政区划", "发布时间"):
                assert got, h
            else:
                assert got == cells.get(h, ""), (ident, h)


# --- login ------------------------------------------------------------------------


def test_login_sets_a_signed_strict_httponly_session_and_lands_on_the_records(env: Env) -> None:
    with TestClient(app_for(env.store)) as client:
        r = client.get(f"/portal/offices/{CITY.code}/records", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/portal/login?next=")
        r = login(client, CITY.code, env.tokens[CITY.code])
        assert r.status_code == 303
        assert r.headers["location"] == f"/portal/offices/{CITY.code}/records"
        cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE))
        low = cookie.lower()
        assert "httponly" in low and "samesite=strict" in low and "path=/portal" in low
        assert re.search(r"max-age=\d+", low) and env.tokens[CITY.code] not in cookie
        page = client.get(r.headers["location"])
        assert page.status_code == 200 and CITY.name in page.text
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert page.headers["cache-control"] == "no-store"
        # logout ends it
        out = client.get("/portal/logout", follow_redirects=False)
        assert out.status_code == 303
        again = client.get(f"/portal/offices/{CITY.code}/records", follow_redirects=False)
        assert again.status_code == 303


def test_login_goes_on_only_to_a_portal_page(env: Env) -> None:
    own = f"/portal/offices/{CITY.code}/records"
    asked = f"{own}?kind=case&from=2026-03-05"
    for next_url, lands in [(asked, asked), ("https://evil.example/", own), ("//evil.example", own),
                            ("/portal/x\r\nSet-Cookie: a=b", own), ("/other", own)]:  # fmt: skip
        with TestClient(app_for(env.store)) as client:
            r = login(client, CITY.code, env.tokens[CITY.code], next_url)
            assert r.status_code == 303 and r.headers["location"] == lands


def test_bad_credentials_and_revoked_offices_are_refused(env: Env) -> None:
    revoked = next(o for o in OFFICES if not o.active)
    with TestClient(app_for(env.store)) as client:
        bad = login(client, CITY.code, "ehof_not-a-credential")
        assert bad.status_code == 401 and "办公室代码或凭证不正确" in bad.text
        assert SESSION_COOKIE not in bad.cookies
        # a real credential, but of another office
        other = login(client, CITY.code, env.tokens[COUNTY.code])
        assert other.status_code == 401 and "办公室代码或凭证不正确" in other.text
        gone = login(client, revoked.code, env.tokens[revoked.code])
        assert gone.status_code == 403 and "停用" in gone.text
        # a form posted without the login page's nonce (e.g. from another site)
        forged = client.post("/portal/login", data={"code": CITY.code,
                             "credential": env.tokens[CITY.code], "nonce": "x"},
                             follow_redirects=False)  # fmt: skip
        assert forged.status_code == 400 and SESSION_COOKIE not in forged.cookies
        assert client.get(f"/portal/offices/{CITY.code}/records",
                          follow_redirects=False).status_code == 303  # fmt: skip


def test_failed_logins_are_throttled_per_client_and_office_code(env: Env) -> None:
    now = [1000.0]
    throttle = LoginThrottle(limit=3, window_s=600, clock=lambda: now[0])
    with TestClient(app_for(env.store, throttle=throttle)) as client:
        for _ in range(3):
            assert login(client, CITY.code, "ehof_guess").status_code == 401
        # the limit reached: refused even with the right credential, and says when to retry
        held = login(client, CITY.code, env.tokens[CITY.code])
        assert held.status_code == 429 and "登录失败次数过多" in held.text
        assert int(held.headers["Retry-After"]) == 600
        assert SESSION_COOKIE not in held.cookies
        # another office code from the same client is not held
        assert login(client, COUNTY.code, env.tokens[COUNTY.code]).status_code == 303
        # the oldest failure leaves the window: the office may log in again
        now[0] += 600
        ok = login(client, CITY.code, env.tokens[CITY.code])
        assert ok.status_code == 303 and SESSION_COOKIE in ok.cookies
        # a success clears the count
        assert login(client, CITY.code, "ehof_guess").status_code == 401
        assert login(client, CITY.code, env.tokens[CITY.code]).status_code == 303


def test_revoking_the_credential_ends_the_session(env: Env) -> None:
    second = issue_credential(env.store, COUNTY.code)
    with TestClient(app_for(env.store)) as client:
        assert login(client, COUNTY.code, second).status_code == 303
        url = f"/portal/offices/{COUNTY.code}/records"
        assert client.get(url).status_code == 200
        hint = second[: len("ehof_") + 6]
        revoke(env.store, COUNTY.code, credential=hint)
        assert client.get(url, follow_redirects=False).status_code == 303


# --- records and filters ------------------------------------------------------------


@pytest.mark.parametrize(
    ("office", "kind", "filters"),
    [
        (CITY, "license", {}),
        (CITY, "case", {}),
        (CITY, "license", {"type": BUSINESS}),
        (CITY, "license", {"from": "2026-03-10", "to": "2026-03-20"}),
        (CITY, "case", {"from": "2026-03-05", "to": "2026-03-05"}),
        (CITY, "license", {"q": "000012"}),
        (COUNTY, "license", {"from": "2026-03-12"}),
        (TOWNSHIP, "case", {"to": "2026-03-30"}),
    ],
)
def test_each_filter_shows_exactly_the_matching_records_masked(
    env: Env, office: Office, kind: str, filters: dict[str, str]
) -> None:
    wanted = want(env, office, kind, **filters)
    assert wanted, "the filter must select something"
    with TestClient(app_for(env.store, page_size=9)) as client:
        assert login(client, office.code, env.tokens[office.code]).status_code == 303
        rows = browse(client, office, kind=kind, **filters)
        check_rows(rows, wanted, kind)
        assert len(rows) > 9 or filters  # several pages unfiltered
        # nothing of the clear documents that the office may not see
        clear = {d.get("CZZTDM") or d.get("SQRZJHM") for _, d in env.records}
        citizens = {c for c in clear if c and len(c) == 18 and c[:2] == "37"}
        assert citizens and not citizens & {c for r in rows for c in r.values()}


def test_the_date_filter_follows_beijing_days(env: Env) -> None:
    """A record stored at 16:00 UTC belongs to the next Beijing day."""
    late = next(n for n, at in enumerate(env.stored_at)
                if at.hour >= 16 and env.records[n][0] == "case"
                and expected(CITY, "case", env.records[n][1]))  # fmt: skip
    day = beijing_day(env.stored_at[late])
    assert day != env.stored_at[late].date()
    with TestClient(app_for(env.store)) as client:
        login(client, CITY.code, env.tokens[CITY.code])
        rows = browse(client, CITY, kind="case", **{"from": day.isoformat(),
                                                     "to": day.isoformat()})  # fmt: skip
        assert env.records[late][1]["BJBH"] in {r["标识"] for r in rows}


@pytest.mark.parametrize(
    ("params", "field"),
    [({"kind": "seal"}, "kind"), ({"kind": "license", "type": "11100000000013338W999"}, "type"),
     ({"from": "2026-13-01"}, "from"), ({"from": "2026-03-05", "to": "2026-03-01"}, "to")],
)  # fmt: skip
def test_invalid_filters_are_explained(env: Env, params: dict[str, str], field: str) -> None:
    with TestClient(app_for(env.store)) as client:
        login(client, CITY.code, env.tokens[CITY.code])
        r = client.get(f"/portal/offices/{CITY.code}/records", params=params)
        assert r.status_code == 422
        assert lxml_html.fromstring(r.text).xpath('//p[@id="error"]/text()')
        e = client.get(f"/portal/offices/{CITY.code}/export", params={**params, "format": "csv"})
        assert e.status_code == 422
    # a county office without case records cannot ask for them
    with TestClient(app_for(env.store)) as client:
        login(client, COUNTY.code, env.tokens[COUNTY.code])
        r = client.get(f"/portal/offices/{COUNTY.code}/records", params={"kind": "case"})
        assert r.status_code == 422 and "未获授权" in r.text


# --- exports ----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
@pytest.mark.parametrize(
    ("office", "kind", "filters"),
    [(CITY, "license", {}), (CITY, "license", {"type": BUSINESS, "from": "2026-03-08"}),
     (CITY, "case", {"q": "case0001"}), (TOWNSHIP, "license", {})],
)  # fmt: skip
def test_exports_hold_the_filtered_records_with_chinese_headers(
    env: Env, fmt: str, office: Office, kind: str, filters: dict[str, str]
) -> None:
    wanted = want(env, office, kind, **filters)
    assert wanted
    with TestClient(app_for(env.store)) as client:
        login(client, office.code, env.tokens[office.code])
        r = client.get(f"/portal/offices/{office.code}/export",
                       params={"kind": kind, "format": fmt, **filters})  # fmt: skip
        assert r.status_code == 200, r.text
        disposition = r.headers["content-disposition"]
        assert f"{office.code}-{kind}-" in disposition and disposition.endswith(f'.{fmt}"')
    if fmt == "csv":
        assert r.content.startswith(b"\xef\xbb\xbf")
        data = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    else:
        sheet = load_workbook(io.BytesIO(r.content), read_only=True).active
        assert sheet is not None
        data = [["" if c is None else str(c) for c in row]
                for row in sheet.iter_rows(values_only=True)]  # fmt: skip
    header = data[0]
    assert len(header) == len(set(header))
    assert header[:4] == ["类别", "标识", "版本", "行政区划"] and header[-1] == "发布时间"
    rows = [dict(zip(header, r, strict=True)) for r in data[1:]]
    check_rows(rows, wanted, kind, exported=True)
    hostile = [r for r in rows if HOSTILE_HOLDER in r.values()]
    if office is CITY and not filters:  # a formula is neutralised; other text is kept as it is
        assert hostile and hostile[0]["证照编号"] == "'" + FORMULA_NUMBER
    with env.store.session() as s:
        events = s.execute(select(AuditEvent.subject, AuditEvent.detail)
                           .where(AuditEvent.event == "office_portal_export")).all()  # fmt: skip
    assert [(sub, d["rows"], d["format"]) for sub, d in events] == [(office.code, len(wanted), fmt)]


def test_filters_and_exports_on_postgresql(pg_env: Env) -> None:
    """The same pages and files from a PostgreSQL store (time zones and date bounds
    are compared by the database there)."""
    env = pg_env
    cases = [(CITY, "license", {"type": BUSINESS, "from": "2026-03-10", "to": "2026-03-25"}),
             (CITY, "case", {"from": "2026-03-05", "to": "2026-03-05"}),
             (TOWNSHIP, "license", {"q": "0000"})]  # fmt: skip
    with TestClient(app_for(env.store, page_size=7)) as client:
        for office, kind, filters in cases:
            client.cookies.clear()
            assert login(client, office.code, env.tokens[office.code]).status_code == 303
            wanted = want(env, office, kind, **filters)
            assert wanted
            check_rows(browse(client, office, kind=kind, **filters), wanted, kind)
            r = client.get(f"/portal/offices/{office.code}/export",
                           params={"kind": kind, "format": "csv", **filters})  # fmt: skip
            data = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
            rows = [dict(zip(data[0], row, strict=True)) for row in data[1:]]
            check_rows(rows, wanted, kind, exported=True)


# --- access control ---------------------------------------------------------------------


def test_another_offices_pages_are_refused_and_audited(env: Env) -> None:
    with TestClient(app_for(env.store)) as client:
        login(client, TOWNSHIP.code, env.tokens[TOWNSHIP.code])
        for path in ("records", "export?format=csv"):
            r = client.get(f"/portal/offices/{COUNTY.code}/{path}")
            assert r.status_code == 403 and "无权访问" in r.text
            assert COUNTY.name not in r.text
        assert client.get(f"/portal/offices/{TOWNSHIP.code}/records").status_code == 200
    with env.store.session() as s:
        denied = s.execute(select(AuditEvent.subject, AuditEvent.detail)
                           .where(AuditEvent.event == "office_access_denied")).all()  # fmt: skip
    assert [(sub, d["asked_for"], d["channel"]) for sub, d in denied] == [
        (TOWNSHIP.code, COUNTY.code, "portal")
    ] * 2


def test_forged_altered_or_expired_sessions_are_refused(env: Env) -> None:
    url = f"/portal/offices/{CITY.code}/records"
    with TestClient(app_for(env.store)) as client:
        login(client, TOWNSHIP.code, env.tokens[TOWNSHIP.code])
        genuine = client.cookies[SESSION_COOKIE]
    payload, mac = genuine.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data["o"] = CITY.code  # claim to be the city office
    forged_payload = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    other_secret = SessionCodec(b"another-secret-" + b"y" * 32).dumps(CITY.code, data["c"])
    expired = SessionCodec(SECRET.encode(), max_age_s=60, clock=lambda: 1.0e9).dumps(
        TOWNSHIP.code, data["c"]
    )
    flipped = mac[:-2] + ("A" if mac[-2] != "A" else "B") + mac[-1]
    for value in (f"{forged_payload}.{mac}", other_secret, expired, f"{payload}.{flipped}",
                  "garbage", f"{payload}."):  # fmt: skip
        with TestClient(app_for(env.store)) as client:
            client.cookies.set(SESSION_COOKIE, value, path="/portal")
            r = client.get(url, follow_redirects=False)
            assert r.status_code == 303 and r.headers["location"].startswith("/portal/login")
    with TestClient(app_for(env.store)) as client:  # the genuine one still works, for its office
        client.cookies.set(SESSION_COOKIE, genuine, path="/portal")
        assert client.get(f"/portal/offices/{TOWNSHIP.code}/records").status_code == 200


def test_values_are_escaped_everywhere(env: Env) -> None:
    probe = '"><script>alert(1)</script>'
    with TestClient(app_for(env.store)) as client:
        login(client, CITY.code, env.tokens[CITY.code])
        rows = browse(client, CITY, kind="license")
        assert HOSTILE_HOLDER in {c for r in rows for c in r.values()}  # shown as text
        page = client.get(f"/portal/offices/{CITY.code}/records", params={"kind": "license"})
        pages = [page.text]
        while 'id="next"' in pages[-1]:
            nxt = lxml_html.fromstring(pages[-1]).xpath('//a[@id="next"]/@href')[0]
            pages.append(client.get(nxt).text)
        assert any("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;" in p for p in pages)
        searched = client.get(f"/portal/offices/{CITY.code}/records",
                              params={"kind": "license", "q": probe})  # fmt: skip
        assert searched.status_code == 200
        refused = login(client, probe, "ehof_x")
        for text in [*pages, searched.text, refused.text]:
            assert "<script" not in text.lower()
        value = lxml_html.fromstring(searched.text).xpath('//input[@name="q"]/@value')
        assert value == [probe]  # round-trips as the value, not as markup


# --- the secret ---------------------------------------------------------------------------


def test_the_portal_secret_comes_from_the_environment_or_a_private_generated_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    settings = Settings.from_env(home=tmp_path, database_url="sqlite://")
    first = portal_secret(settings)
    assert len(first) >= 32 and portal_secret(settings) == first
    assert (tmp_path / "portal.secret").stat().st_mode & 0o077 == 0
    monkeypatch.setenv(SECRET_ENV, "z" * 40)
    assert portal_secret(settings) == b"z" * 40
    monkeypatch.setenv(SECRET_ENV, "short")
    with pytest.raises(ConfigError, match=SECRET_ENV):
        portal_secret(settings)
    with pytest.raises(ConfigError):
        SessionCodec(b"short")
