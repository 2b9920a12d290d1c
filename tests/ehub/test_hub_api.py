"""The operators' API (ehub.hub_api) over a store of generated data, and the Airflow plugin
that mounts it: tokens (401 without), every endpoint against the store's own rows
counted here with SQL, personal data masked, the OpenAPI document, the sign-in of
the dashboard, and the plugin as Airflow loads it."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text

from ehub.config import Settings
from ehub.errors import ConfigError
from ehub.hub_api import create_app
from ehub.hub_auth import COOKIE, OperatorTokens, new_token, token_digest
from ehub.store.db import Store
from tests.ehub.hub_data import Generated, populate

REPO = Path(__file__).resolve().parents[2]
GET_ENDPOINTS = (
    "/api/v1/licenses", "/api/v1/licenses/{identifier}", "/api/v1/cases",
    "/api/v1/cases/{case_number}", "/api/v1/quarantine", "/api/v1/quarantine/counts",
    "/api/v1/seals", "/api/v1/deliveries", "/api/v1/deliveries/letters",
    "/api/v1/reconciliations", "/api/v1/offices", "/api/v1/lineage/{identifier}",
    "/api/v1/indicators",
)  # fmt: skip


@dataclass
class Hub:
    client: TestClient
    store: Store
    gen: Generated
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def get(self, path: str, **params: Any) -> Any:
        r = self.client.get(path, params=params, headers=self.auth)
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
        return r.json()

    def sql(self, query: str, **params: Any) -> Any:
        with self.store.engine.connect() as conn:
            return conn.execute(text(query), params).all()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    tmp = tmp_path_factory.mktemp("hub_api")
    settings = Settings.from_env(home=tmp, database_url=f"sqlite:///{tmp / 'hub.db'}")
    store = Store(settings.database_url)
    store.migrate()
    gen = populate(store, seed=11)
    token, entry = new_token("ops-alice")
    _other, other_entry = new_token("ops-bob")
    app = create_app(settings, tokens=OperatorTokens.parse(f"{other_entry}, {entry}"))
    with TestClient(app) as client:
        yield Hub(client, store, gen, token)
    store.dispose()


def _pages(hub: Hub, path: str, key: str = "next", **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    after: Any = 0
    while True:
        body = hub.get(path, after=after, **params)
        items += body["items"]
        if not body["more"]:
            return items
        after = body[key]


def test_every_endpoint_refuses_a_missing_or_unknown_token(hub: Hub) -> None:
    ident, case = hub.gen.license_ids[0], hub.gen.case_numbers[0]
    for template in GET_ENDPOINTS:
        path = template.format(identifier=ident, case_number=case)
        for headers in ({}, {"Authorization": "Bearer not-a-token"},
                        {"Authorization": f"Basic {hub.token}"}):  # fmt: skip
            r = hub.client.get(path, headers=headers)
            assert r.status_code == 401, (path, headers, r.status_code)
            assert r.headers["www-authenticate"] == "Bearer"
        assert hub.client.get(path, headers=hub.auth).status_code == 200, path
    assert hub.client.get("/healthz").status_code == 200


def test_licenses_page_through_every_version_and_show_one_masked(hub: Hub) -> None:
    items = _pages(hub, "/api/v1/licenses", limit=7)
    rows = hub.sql("SELECT id, identifier, version, state FROM licenses ORDER BY id")
    assert [(i["cursor"], i["identifier"], i["version"], i["state"]) for i in items] == [
        tuple(r) for r in rows
    ]
    assert {i["identifier"] for i in items} == set(hub.gen.license_ids)
    sealed = _pages(hub, "/api/v1/licenses", limit=50, state="sealed")
    assert len(sealed) == hub.sql("SELECT count(*) FROM licenses WHERE state = 'sealed'")[0][0]

    [(person,)] = hub.sql(
        "SELECT identifier FROM licenses WHERE json_extract(document, '$.CZZTDMLXDM') = '111' "
        "ORDER BY id LIMIT 1"
    )
    body = hub.get(f"/api/v1/licenses/{person}")
    versions = hub.sql("SELECT version, document FROM licenses WHERE identifier = :i "
                       "ORDER BY version", i=person)  # fmt: skip
    assert [v["version"] for v in body["versions"]] == [v for v, _ in versions]
    stored = json.loads(versions[0][1])
    shown = body["versions"][0]["document"]
    assert shown["CZZT"] == stored["CZZT"][0] + "*" * (len(stored["CZZT"]) - 1)
    assert shown["CZZTDM"] != stored["CZZTDM"] and shown["CZZTDM"][-4:] == stored["CZZTDM"][-4:]
    assert stored["CZZTDM"] not in json.dumps(body)
    signed = hub.sql("SELECT count(*) FROM signatures s JOIN licenses l ON l.id = s.license_id "
                     "WHERE l.identifier = :i", i=person)[0][0]  # fmt: skip
    assert sum(len(v["signatures"]) for v in body["versions"]) == signed
    assert hub.client.get("/api/v1/licenses/nope", headers=hub.auth).status_code == 404
    assert hub.client.get("/api/v1/licenses?limit=0", headers=hub.auth).status_code == 422


def test_cases_page_and_show_the_applicant_masked(hub: Hub) -> None:
    items = _pages(hub, "/api/v1/cases", limit=9)
    assert len(items) == hub.sql("SELECT count(*) FROM case_records")[0][0]
    assert {i["case_number"] for i in items} == set(hub.gen.case_numbers)
    [(number, doc)] = hub.sql(
        "SELECT case_number, document FROM case_records "
        "WHERE json_extract(document, '$.SQRLX') = '0' ORDER BY id LIMIT 1"
    )
    stored = json.loads(doc)
    body = hub.get(f"/api/v1/cases/{number}")
    shown = body["versions"][0]["document"]
    assert shown["SQRMC"] != stored["SQRMC"] and shown["SQRMC"][0] == stored["SQRMC"][0]
    assert stored["SQRZJHM"] not in json.dumps(body)
    county = stored["XZQHDM"]
    in_county = _pages(hub, "/api/v1/cases", limit=50, division=county)
    assert len(in_county) == hub.sql(
        "SELECT count(*) FROM case_records WHERE division = :d", d=county)[0][0]  # fmt: skip


def test_quarantine_lists_every_defect_and_counts_open_records(hub: Hub) -> None:
    items = _pages(hub, "/api/v1/quarantine", limit=6, state="all")
    assert sorted(i["id"] for i in items) == [
        r[0] for r in hub.sql("SELECT id FROM quarantine ORDER BY id")
    ]
    assert {i["raw_id"] for i in items} == set(hub.gen.quarantined_raw_ids)
    assert all(i["message_zh"] and i["department"] for i in items)
    open_ = _pages(hub, "/api/v1/quarantine", limit=50)
    assert len(open_) == hub.sql("SELECT count(*) FROM quarantine WHERE state = 'open'")[0][0]
    counts = hub.get("/api/v1/quarantine/counts")["items"]
    expected = hub.sql("SELECT source_id, reason_code, count(DISTINCT raw_id) FROM quarantine "
                       "WHERE state = 'open' GROUP BY source_id, reason_code")  # fmt: skip
    assert {(c["source_id"], c["reason_code"], c["records"]) for c in counts} == {
        tuple(r) for r in expected
    }
    assert all(c["reason_zh"] for c in counts)
    bad = hub.client.get("/api/v1/quarantine?reason=E_NO_SUCH", headers=hub.auth)
    assert bad.status_code == 422 and "E_NO_SUCH" in bad.text


def test_seals_deliveries_and_reconciliations(hub: Hub) -> None:
    seals = hub.get("/api/v1/seals")["items"]
    assert sorted(s["code"] for s in seals) == sorted(hub.gen.seal_codes)
    assert not {"cert_pem", "chain_pem", "key_ref"} & set(seals[0])
    registered = hub.sql("SELECT code FROM seals WHERE registration_no IS NOT NULL")
    assert {s["code"] for s in seals if s["registration_no"]} == {r[0] for r in registered}

    status = hub.get("/api/v1/deliveries")["items"]
    expected = hub.sql("SELECT destination, kind, state, count(*) FROM deliveries "
                       "GROUP BY destination, kind, state")  # fmt: skip
    assert {(s["destination"], s["kind"], s["state"], s["count"]) for s in status} == {
        tuple(r) for r in expected
    }
    for state in ("dead", "rejected"):
        letters = hub.get("/api/v1/deliveries/letters", state=state, limit=500)["items"]
        ids = hub.sql("SELECT id FROM deliveries WHERE state = :s ORDER BY id", s=state)
        assert [x["id"] for x in letters] == [r[0] for r in ids]

    recon = hub.get("/api/v1/reconciliations")["items"]
    events = hub.sql("SELECT detail FROM audit_events WHERE event = 'reconciled' ORDER BY id")
    assert [(r["day"], r["destination"], r["missing"], r["unknown_to_hub"]) for r in recon] == [
        (d["day"], d["destination"], d["missing"], d["unknown_to_hub"])
        for d in (json.loads(e[0]) for e in events)
    ]


def test_offices_with_their_feed_freshness(hub: Hub) -> None:
    offices = hub.get("/api/v1/offices")["items"]
    published = dict(hub.sql("SELECT office, count(*) FROM feed_messages "
                             "WHERE state = 'published' GROUP BY office"))  # fmt: skip
    assert {o["code"] for o in offices} == set(hub.gen.office_tokens)
    for o in offices:
        assert o["feed"]["published"] == published[o["code"]]
        assert o["feed"]["p95_lag_s"] is not None
    body = json.dumps(offices)
    assert not any(tok in body for tok in hub.gen.office_tokens.values())


def test_lineage_tells_the_story_of_a_record(hub: Hub) -> None:
    [(ident,)] = hub.sql(
        "SELECT identifier FROM licenses WHERE state = 'sealed' ORDER BY id LIMIT 1"
    )
    story = hub.get(f"/api/v1/lineage/{ident}")
    assert story["kind"] == "license" and story["identifier"] == ident
    steps = [s["step"] for v in story["versions"] for s in v["steps"]]
    assert "extracted" in steps and "normalized" in steps and "sealed" in steps
    case = hub.gen.case_numbers[0]
    assert hub.get(f"/api/v1/lineage/{case}")["kind"] == "case"
    assert hub.client.get("/api/v1/lineage/unknown-thing", headers=hub.auth).status_code == 404


def test_indicators_endpoint(hub: Hub) -> None:
    body = hub.get("/api/v1/indicators", days="0")
    national = {i["name"]: i for i in body["national"]}
    assert set(national) >= {
        "licenses_aggregated", "licenses_sealed_share", "license_types_with_licenses",
        "cases_aggregated", "cases_item_linked_share", "licenses_case_linked_share",
    }  # fmt: skip
    assert national["licenses_aggregated"]["value"] == hub.sql(
        "SELECT count(DISTINCT identifier) FROM licenses")[0][0]  # fmt: skip
    assert national["cases_aggregated"]["value"] == hub.sql(
        "SELECT count(DISTINCT case_number) FROM case_records")[0][0]  # fmt: skip
    depts = {d["department"]: d["extracted"] for d in body["departments"]}
    assert depts == dict(hub.sql("SELECT s.department, count(*) FROM raw_records r "
                                 "JOIN sources s ON s.id = r.source_id GROUP BY s.department"))  # fmt: skip
    assert {p["destination"] for p in body["platforms"]} == {"provincial", "national"}
    # days are China Standard Time dates (SQLite keeps UTC wall time)
    cst = timezone(timedelta(hours=8))
    per_day: dict[str, int] = {}
    for (at,) in hub.sql("SELECT extracted_at FROM raw_records"):
        day = datetime.fromisoformat(at).replace(tzinfo=UTC).astimezone(cst).date().isoformat()
        per_day[day] = per_day.get(day, 0) + 1
    assert {d["day"]: d["extracted"] for d in body["daily"] if d["extracted"]} == per_day


def test_openapi_document_lists_every_endpoint_behind_the_bearer_scheme(hub: Hub) -> None:
    doc = hub.client.get("/openapi.json").json()
    assert set(GET_ENDPOINTS) <= set(doc["paths"])
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    for path in GET_ENDPOINTS:
        assert doc["paths"][path]["get"]["security"] == [{"HTTPBearer": []}], path
    assert "/dashboard" in doc["paths"] and "/healthz" in doc["paths"]
    assert hub.client.get("/docs").status_code == 404  # no page loading scripts from a CDN


def test_dashboard_sign_in_sets_an_http_only_cookie_and_sign_out_clears_it(hub: Hub) -> None:
    c = TestClient(hub.client.app)
    first = c.get("/dashboard")
    assert first.status_code == 401 and 'name="token"' in first.text
    assert c.post("/login", data={"token": "wrong"}, follow_redirects=False).status_code == 401
    ok = c.post("/login", data={"token": hub.token}, follow_redirects=False)
    assert ok.status_code == 303 and ok.headers["location"] == "dashboard"
    cookie = ok.headers["set-cookie"]
    assert f"{COOKIE}=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    page = c.get("/dashboard")
    assert page.status_code == 200 and 'data-indicator="licenses_aggregated"' in page.text
    assert c.get("/api/v1/seals").status_code == 200  # the cookie serves the API too
    out = c.post("/logout", follow_redirects=False)
    assert out.status_code == 303
    assert c.get("/dashboard").status_code == 401


def test_token_configuration_holds_digests_only() -> None:
    token, entry = new_token("ops")
    name, digest = entry.split(":")
    assert name == "ops" and digest == token_digest(token) and token not in entry
    tokens = OperatorTokens.parse(f"{entry}\n{'a' * 64}")
    assert tokens.operator(token) == "ops" and tokens.operator(token + "x") is None
    assert OperatorTokens.from_env({}).digests == {}
    with pytest.raises(ConfigError, match=r"EHUB_API_TOKENS: entry 2 is not name:sha256"):
        OperatorTokens.parse(f"{entry},ops2:{token}")
    with pytest.raises(ConfigError, match="operator name"):
        new_token("bad name")


def test_the_app_is_built_without_a_database_and_answers_503_when_it_is_down() -> None:
    settings = Settings.from_env(database_url="postgresql+psycopg://nobody@127.0.0.1:1/nowhere")
    token, entry = new_token("ops")
    with TestClient(create_app(settings, tokens=OperatorTokens.parse(entry))) as c:
        assert c.get("/healthz").status_code == 200
        r = c.get("/api/v1/licenses", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 503 and r.headers["retry-after"] == "5"
        assert "nobody" not in r.text


def _load_plugin() -> Any:
    sys.path.insert(0, str(REPO / "plugins"))
    try:
        spec = importlib.util.spec_from_file_location("ehub_plugin_under_test",
                                                      REPO / "plugins" / "ehub_plugin.py")  # fmt: skip
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(REPO / "plugins"))


def test_plugin_mounts_the_hub_app_and_links_the_dashboard(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EHUB_DATABASE_URL", hub.store.url)
    monkeypatch.setenv("EHUB_API_TOKENS", "ops:" + token_digest(hub.token))
    plugin = _load_plugin().EhubPlugin
    [mounted] = plugin.fastapi_apps
    assert mounted["url_prefix"] == "/ehub" and isinstance(mounted["app"], FastAPI)
    [view] = plugin.external_views
    assert view["href"] == "ehub/dashboard" and not view["href"].startswith("/")
    assert view["url_route"] and view["destination"] == "nav"
    # mounted under its prefix as the Airflow API server does: relative links and cookie path
    root = FastAPI()
    root.mount(mounted["url_prefix"], mounted["app"])
    c = TestClient(root)
    ok = c.post("/ehub/login", data={"token": hub.token}, follow_redirects=False)
    assert ok.status_code == 303 and "Path=/ehub/" in ok.headers["set-cookie"]
    page = c.get("/ehub/" + ok.headers["location"])
    assert page.status_code == 200 and 'data-indicator="cases_aggregated"' in page.text
    assert c.get("/ehub/api/v1/seals", headers=hub.auth).status_code == 200


def test_airflow_loads_the_plugin_and_serves_the_app(tmp_path: Path) -> None:
    """`airflow plugins` lists it, and Airflow's own init_plugins mounts it, in the
    environment `ehub run` gives Airflow (no hub database exists there)."""
    from ehub.orchestration import airflow_env

    settings = Settings.from_env(home=tmp_path, database_url=f"sqlite:///{tmp_path / 'none.db'}")
    env = airflow_env(settings)
    token, entry = new_token("ops")
    env["EHUB_API_TOKENS"] = entry
    airflow = str(Path(sys.executable).parent / "airflow")
    listed = subprocess.run([airflow, "plugins", "-o", "json"], env=env, capture_output=True,
                            text=True, timeout=300, check=False)  # fmt: skip
    assert listed.returncode == 0, listed.stderr[-2000:]
    [plugin] = [p for p in json.loads(listed.stdout) if p["name"] == "ehub"]
    assert plugin["fastapi_apps"][0]["url_prefix"] == "/ehub"
    assert plugin["external_views"][0]["href"] == "ehub/dashboard"
    probe = (
        "import json\nfrom fastapi import FastAPI\nfrom fastapi.testclient import TestClient\n"
        "from airflow.api_fastapi.app import init_plugins\n"
        "app = FastAPI()\ninit_plugins(app)\nc = TestClient(app)\n"
        "print(json.dumps({p: c.get(p, headers={'Authorization': 'Bearer ' + TOKEN}).status_code"
        " for p in ('/ehub/healthz', '/ehub/openapi.json', '/ehub/api/v1/seals')}))\n"
        "print(json.dumps(c.get('/ehub/dashboard').status_code))\n"
    ).replace("TOKEN", repr(token))
    served = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                            text=True, timeout=300, check=False)  # fmt: skip
    assert served.returncode == 0, served.stderr[-2000:]
    statuses, dashboard = served.stdout.strip().splitlines()[-2:]
    # no hub store behind it (an empty SQLite file): the API answers 503, the dashboard 401
    assert json.loads(statuses) == {
        "/ehub/healthz": 200, "/ehub/openapi.json": 200, "/ehub/api/v1/seals": 503,
    }  # fmt: skip
    assert json.loads(dashboard) == 401


def test_metrics_endpoint_needs_a_token_and_speaks_prometheus(hub: Hub) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    assert hub.client.get("/metrics").status_code == 401
    r = hub.client.get("/metrics", headers=hub.auth)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    assert [s.value for s in families["ehub_store_up"].samples] == [1.0]
    versions = sum(s.value for s in families["ehub_license_versions"].samples)
    assert versions == hub.sql("SELECT count(*) FROM licenses")[0][0]


def test_the_dev_operator_token_is_made_once_private_and_accepted(tmp_path: Path) -> None:
    from ehub.hub_auth import dev_operator_token

    token, entry = dev_operator_token(tmp_path)
    assert dev_operator_token(tmp_path) == (token, entry)
    assert (tmp_path / "operator_token").stat().st_mode & 0o777 == 0o600
    assert token not in entry and OperatorTokens.parse(entry).operator(token) == "dev-operator"


def test_a_department_user_sees_only_its_department(tmp_path: Path) -> None:
    """A token named ``housing/clerk`` reads the housing department's records and
    quarantine and nothing else; the province-wide views answer 403."""
    settings = Settings.from_env(home=tmp_path, database_url=f"sqlite:///{tmp_path / 'hub.db'}")
    store = Store(settings.database_url)
    store.migrate()
    gen = populate(store, seed=5)
    token, entry = new_token("housing/clerk")
    app = create_app(settings, tokens=OperatorTokens.parse(entry))
    auth = {"Authorization": f"Bearer {token}"}
    try:
        with TestClient(app) as client, store.engine.connect() as conn:
            own = {r[0] for r in conn.execute(text(
                "SELECT identifier FROM licenses WHERE source_id LIKE 'housing.%'"))}  # fmt: skip
            others = {r[0] for r in conn.execute(text(
                "SELECT identifier FROM licenses WHERE source_id NOT LIKE 'housing.%'"))}  # fmt: skip
            assert own and others
            seen: set[str] = set()
            after = 0
            while True:
                body = client.get("/api/v1/licenses", params={"after": after, "limit": 50},
                                  headers=auth).json()  # fmt: skip
                seen |= {i["identifier"] for i in body["items"]}
                if not body["more"]:
                    break
                after = body["next"]
            assert seen == own
            assert client.get(f"/api/v1/licenses/{sorted(own)[0]}", headers=auth).status_code == 200
            assert client.get(f"/api/v1/licenses/{sorted(others)[0]}",
                              headers=auth).status_code == 404  # fmt: skip
            assert client.get("/api/v1/cases", headers=auth).json()["items"] == []
            assert client.get(f"/api/v1/cases/{gen.case_numbers[0]}",
                              headers=auth).status_code == 404  # fmt: skip
            q = client.get("/api/v1/quarantine", headers=auth)
            assert q.status_code == 403  # a department user names its own source
            own_q = client.get(
                "/api/v1/quarantine",
                headers=auth,
                params={"source": "housing.construction_permits", "state": "all"},
            )
            assert own_q.status_code == 200 and own_q.json()["items"]
            assert client.get("/api/v1/quarantine", headers=auth, params={
                "source": "market_regulation.business_licenses"}).status_code == 403  # fmt: skip
            counts = client.get("/api/v1/quarantine/counts", headers=auth).json()["items"]
            assert counts and {c["source_id"] for c in counts} == {"housing.construction_permits"}
            for path in ("/api/v1/seals", "/api/v1/deliveries", "/api/v1/deliveries/letters",
                         "/api/v1/reconciliations", "/api/v1/offices", "/api/v1/indicators",
                         f"/api/v1/lineage/{sorted(own)[0]}", "/metrics"):  # fmt: skip
                assert client.get(path, headers=auth).status_code == 403, path
            assert client.get("/dashboard", headers=auth).status_code == 403
    finally:
        store.dispose()
