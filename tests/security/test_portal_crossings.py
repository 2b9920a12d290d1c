"""Crossings through the office portal: every office logged in tries every other
office's records and export pages, with its own session cookie, a cookie re-signed
for another office, a forged or expired cookie, and a revoked credential. Nothing
of another office's may come back; each refusal is a 403 (audited) or a redirect
to the login page. Prints ``crossings tried N, leaks 0``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from ehub.office_portal import SESSION_COOKIE
from ehub.offices import issue_credential, revoke
from ehub.portal_session import SessionCodec
from ehub.store.models import AuditEvent
from tests.ehub.test_office_portal import SECRET, Env, _env, app_for, login
from tests.ehub.test_routing import OFFICES, expected

PAGES = ("records?kind=license", "records?kind=case", "export?format=csv&kind=license",
         "export?format=xlsx&kind=case")  # fmt: skip


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    yield from _env(f"sqlite:///{tmp_path / 'hub.db'}")


def _identifiers(env: Env) -> dict[str, set[str]]:
    """Per office, the identifiers it may see (restated by test_routing.expected)."""
    out: dict[str, set[str]] = {}
    for o in OFFICES:
        out[o.code] = {(d.get("ZZBS") or d["BJBH"]) for k, d in env.records if expected(o, k, d)}
    return out


def credential_ids(env: Env, office: str) -> set[int]:
    from ehub.store.models import OfficeCredentialRow as Cred

    with env.store.session() as s:
        return set(s.scalars(select(Cred.id).where(Cred.office_code == office)))


def _denied(env: Env) -> int:
    with env.store.session() as s:
        return int(s.scalar(select(func.count()).select_from(AuditEvent)
                            .where(AuditEvent.event == "office_access_denied")) or 0)  # fmt: skip


def test_no_office_reads_another_through_the_portal(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    mine = _identifiers(env)
    active = [o for o in OFFICES if o.active]
    tried, leaks = 0, []

    def check(office: str, target: str, body: str, status: int, how: str) -> None:
        nonlocal tried
        tried += 1
        others = set().union(*(v for k, v in mine.items() if k != office)) - mine[office]
        shown = {i for i in others if i in body}
        if shown:
            leaks.append(f"{how}: {office} saw {target}'s {sorted(shown)[:2]}")
        if status == 200 and target != office:
            leaks.append(f"{how}: {office} got 200 for {target}'s page")

    codec = SessionCodec(SECRET.encode())
    expired = SessionCodec(SECRET.encode(), max_age_s=60, clock=lambda: 1.0e9)
    for o in active:
        with TestClient(app_for(env.store)) as client:
            assert login(client, o.code, env.tokens[o.code]).status_code in (302, 303)
            own_cookie = client.cookies.get(SESSION_COOKIE)
            assert own_cookie
            for target in OFFICES:
                if target.code == o.code:
                    continue
                before = _denied(env)
                for page in PAGES:
                    r = client.get(f"/portal/offices/{target.code}/{page}",
                                   follow_redirects=False)  # fmt: skip
                    check(o.code, target.code, r.text, r.status_code, "own session")
                    assert r.status_code == 403, (o.code, target.code, page, r.status_code)
                assert _denied(env) == before + len(PAGES)  # each attempt audited
        # a cookie re-signed with another key, and garbage, lead back to the login page
        for target in active:
            if target.code == o.code:
                continue
            # garbage, an altered MAC, another key, and the right key naming the target
            # office with credential ids that are not the target's
            foreign = [codec.dumps(target.code, cid) for cid in range(1, 12)
                       if cid not in credential_ids(env, target.code)]  # fmt: skip
            for cookie in ("x", own_cookie[:-4] + "AAAA",
                           SessionCodec(b"0" * 64).dumps(target.code, 1), *foreign):  # fmt: skip
                with TestClient(app_for(env.store)) as client:
                    client.cookies.set(SESSION_COOKIE, cookie, path="/portal")
                    r = client.get(f"/portal/offices/{target.code}/records?kind=license",
                                   follow_redirects=False)  # fmt: skip
                    check(o.code, target.code, r.text, r.status_code, "forged cookie")
                    assert r.status_code in (302, 303), r.status_code
        # an expired session of the office itself
        with TestClient(app_for(env.store)) as client:
            for cid in credential_ids(env, o.code):
                client.cookies.set(SESSION_COOKIE, expired.dumps(o.code, cid), path="/portal")
                r = client.get(f"/portal/offices/{o.code}/records?kind=license",
                               follow_redirects=False)  # fmt: skip
                check(o.code, o.code, r.text, 0, "expired cookie")
                assert r.status_code in (302, 303)
    # a credential revoked while its session is open ends the session
    county = next(o for o in active if o.code == "370602-zfq")
    fresh = issue_credential(env.store, county.code)
    with TestClient(app_for(env.store)) as client:
        assert login(client, county.code, fresh).status_code in (302, 303)
        revoke(env.store, county.code, credential=fresh[: len("ehof_") + 6])
        r = client.get(f"/portal/offices/{county.code}/records?kind=license",
                       follow_redirects=False)  # fmt: skip
        check(county.code, county.code, r.text, 0, "revoked credential")
        assert r.status_code in (302, 303)
    with capsys.disabled():
        print(f"\ncrossings (portal): crossings tried {tried}, leaks {len(leaks)}")
    assert leaks == []
