"""The batch endpoints added for the platforms, through FastAPI's TestClient: the national
catalog, cases and seals, and the provincial cases (same machinery, same contract)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from simulators import national, provincial
from simulators.platform_checks import CST
from tests.simulators.platform_payloads import (
    AUTH,
    case_item,
    case_json,
    catalog_item,
    registration,
    seal_item,
    sealed_license,
)


def _seal(key: str, n: int, **seal: Any) -> dict[str, Any]:
    reg = registration(f"370602-MB0056780-{n:02d}")
    reg["seal"].update(seal)
    return seal_item(key, reg)


def _seal_with(key: str, n: int, where: str, **changes: Any) -> dict[str, Any]:
    item = _seal(key, n)
    item["registration"][where].update(changes)
    return item


@dataclass(frozen=True)
class Endpoint:
    """One batch endpoint and how to build its items."""

    app: str
    path: str
    kind: str
    plural: str
    make: Callable[[str, int], dict[str, Any]]
    """A valid item with key and a distinct identity per n."""
    changed: Callable[[str, int], dict[str, Any]]
    """Same identity as ``make(_, n)``, other content."""
    bad_schema: tuple[Callable[[str], dict[str, Any]], str]
    """An item failing the JSON Schema and the field path the message must name."""
    bad_rule: Callable[[str], dict[str, Any]]
    """An item breaking a business rule."""

    def client(self, state: Path, **kwargs: Any) -> TestClient:
        kwargs.setdefault("token", "test-token")
        if self.app == "provincial":
            kwargs.setdefault("signature_check", "structural")
            if "max_items" in kwargs:
                kwargs["max_case_items"] = kwargs.pop("max_items")
            return TestClient(provincial.create_app(state, **kwargs))
        return TestClient(national.create_app(state, **kwargs))

    def identifier(self, item: dict[str, Any]) -> tuple[str, int]:
        if self.kind == "case":
            return item["case"]["BJBH"], item["case"]["BBH"]
        if self.kind == "license":
            return item["license"]["ZZBS"], item["license"]["BBH"]
        return item["registration"]["seal"]["esID"], 1


def _catalog(key: str, n: int, **changes: Any) -> dict[str, Any]:
    return catalog_item(key, sealed_license(f"2024{n:06d}", **changes))


def _case(key: str, n: int, **changes: Any) -> dict[str, Any]:
    return case_item(key, case_json(f"{n:04d}", **changes))


CASES: dict[str, Any] = dict(
    make=_case,
    changed=lambda k, n: _case(k, n, SQRMC="改名后的公司"),
    bad_schema=(lambda k: _case(k, 90, BJZT="done"), "case/BJZT"),
    bad_rule=lambda k: _case(k, 91, BJSJ="2024-05-06T09:00:00+08:00"),
)
ENDPOINTS = {
    "national-catalog": Endpoint(
        "national", "/api/v1/catalog/batch", "license", "licenses",
        make=_catalog,
        changed=lambda k, n: _catalog(k, n, CZZT="改名后的公司"),
        bad_schema=(lambda k: _catalog(k, 90, QZ=[]), "license/QZ"),
        bad_rule=lambda k: _catalog(k, 91, ZZYXQJZRQ="2019-12-31"),
    ),
    "national-cases": Endpoint("national", "/api/v1/cases/batch", "case", "cases", **CASES),
    "national-seals": Endpoint(
        "national", "/api/v1/seals/batch", "seal", "seals",
        make=_seal,
        changed=lambda k, n: _seal(k, n, name="另一个名称"),
        bad_schema=(lambda k: _seal(k, 90, type=7), "registration/seal/type"),
        bad_rule=lambda k: _seal_with(k, 91, "department", uscc="11370602MB00567"),
    ),
    "provincial-cases": Endpoint("provincial", "/api/v1/cases/batch", "case", "cases", **CASES),
}  # fmt: skip


@pytest.fixture(params=list(ENDPOINTS))
def endpoint(request: pytest.FixtureRequest) -> Endpoint:
    return ENDPOINTS[request.param]


@pytest.fixture
def client(endpoint: Endpoint, tmp_path: Path) -> TestClient:
    return endpoint.client(tmp_path / "state")


def send(client: TestClient, ep: Endpoint, *items: dict[str, Any]) -> list[dict[str, Any]]:
    response = client.post(ep.path, json={"items": list(items)}, headers=AUTH)
    assert response.status_code == 200, response.text
    receipts: list[dict[str, Any]] = response.json()["receipts"]
    assert [r["idempotency_key"] for r in receipts] == [i["idempotency_key"] for i in items]
    return receipts


def held(client: TestClient, ep: Endpoint) -> dict[str, int]:
    counts: dict[str, int] = client.get("/admin/stats").json()["kinds"][ep.kind]
    return counts


def today() -> str:
    return datetime.now(CST).date().isoformat()


def test_accepted_then_a_repeated_key_returns_the_original_receipt(
    client: TestClient, endpoint: Endpoint
) -> None:
    (first,) = send(client, endpoint, endpoint.make("k1", 1))
    assert first["status"] == "accepted" and first["duplicate"] is False and first["receipt_id"]
    again, other = send(client, endpoint, endpoint.make("k1", 1), endpoint.make("k2", 2))
    assert again == {**first, "duplicate": True}
    assert other["status"] == "accepted" and other["receipt_id"] != first["receipt_id"]
    if endpoint.kind == "seal":
        assert first["registration_no"].startswith("BA-")
        assert again["registration_no"] == first["registration_no"]
        assert other["registration_no"] != first["registration_no"]
    else:
        assert "registration_no" not in first
    counts = held(client, endpoint)
    assert (counts["versions"], counts["accepted"], counts["duplicates"]) == (2, 2, 1)
    listed = client.get(f"/admin/{endpoint.plural}").json()
    assert sorted(x["receipt_id"] for x in listed) == sorted(
        [first["receipt_id"], other["receipt_id"]]
    )


def test_key_reused_for_other_content_is_refused(client: TestClient, endpoint: Endpoint) -> None:
    send(client, endpoint, endpoint.make("k1", 1))
    (receipt,) = send(client, endpoint, endpoint.changed("k1", 1))
    assert receipt["status"] == "rejected" and receipt["error_code"] == "IDEMPOTENCY_MISMATCH"
    assert held(client, endpoint)["versions"] == 1


def test_same_identity_under_another_key_is_a_conflict(
    client: TestClient, endpoint: Endpoint
) -> None:
    (first,) = send(client, endpoint, endpoint.make("k1", 1))
    (clash,) = send(client, endpoint, endpoint.changed("k2", 1))
    assert clash["status"] == "rejected" and clash["error_code"] == "CONFLICT"
    assert first["receipt_id"] in clash["message"]
    assert "receipt_id" not in clash and "registration_no" not in clash


def test_schema_violation_names_the_field(client: TestClient, endpoint: Endpoint) -> None:
    build, field = endpoint.bad_schema
    bad, good = send(client, endpoint, build("bad"), endpoint.make("good", 1))
    assert bad["status"] == "rejected" and bad["error_code"] == "SCHEMA"
    assert bad["message"].startswith(field), bad["message"]
    assert good["status"] == "accepted"
    assert held(client, endpoint)["rejected"] == 1


def test_business_rule(client: TestClient, endpoint: Endpoint) -> None:
    (receipt,) = send(client, endpoint, endpoint.bad_rule("k1"))
    assert receipt["status"] == "rejected"
    assert receipt["error_code"] == "BUSINESS_RULE", receipt["message"]
    assert held(client, endpoint)["versions"] == 0


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic test-token"])
def test_needs_the_bearer_token(client: TestClient, endpoint: Endpoint, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    response = client.post(endpoint.path, json={"items": [endpoint.make("k", 1)]}, headers=headers)
    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer"
    assert client.get(f"/api/v1/reconciliation/{today()}", headers=headers).status_code == 401
    assert held(client, endpoint)["versions"] == 0


def test_envelope_limits(endpoint: Endpoint, tmp_path: Path) -> None:
    client = endpoint.client(tmp_path / "state", max_items=3)
    four = {"items": [endpoint.make(f"k{n}", n) for n in range(4)]}
    too_many = client.post(endpoint.path, json=four, headers=AUTH)
    assert too_many.status_code == 413 and too_many.json()["error"] == "TOO_MANY_ITEMS"
    bodies: list[dict[str, Any]] = [
        {},
        {"items": []},
        {"items": [{"case": {}}]},
        {"items": [{"idempotency_key": ""}]},
    ]
    for body in bodies:
        response = client.post(endpoint.path, json=body, headers=AUTH)
        assert response.status_code == 422 and response.json()["error"] == "MALFORMED"
    assert len(send(client, endpoint, *four["items"][:3])) == 3


def test_rate_limit_answers_429_with_retry_after(endpoint: Endpoint, tmp_path: Path) -> None:
    client = endpoint.client(tmp_path / "state", rate_limit=1.0)
    codes = [
        client.post(endpoint.path, json={"items": [endpoint.make(f"k{n}", n)]}, headers=AUTH)
        for n in range(3)
    ]
    assert codes[0].status_code == 200
    limited = [r for r in codes[1:] if r.status_code == 429]
    assert limited and int(limited[0].headers["Retry-After"]) >= 1
    assert client.get("/admin/stats").json()["rate_limited"] == len(limited)


def test_reconciliation_count_digest_and_admin_delete(
    client: TestClient, endpoint: Endpoint
) -> None:
    items = [endpoint.make(f"k{n}", n) for n in range(3)]
    receipts = send(client, endpoint, *items)
    url = f"/api/v1/reconciliation/{today()}?kind={endpoint.kind}"
    report = client.get(url, headers=AUTH).json()
    ids = [endpoint.identifier(i) for i in items]
    lines = sorted(f"{ident}|{version}" for ident, version in ids)
    assert (report["day"], report["timezone"], report["kind"]) == (today(), "+08:00", endpoint.kind)
    assert report["count"] == 3
    assert report["digest"] == hashlib.sha256("\n".join(lines).encode()).hexdigest()
    assert {i["receipt_id"] for i in report["items"]} == {r["receipt_id"] for r in receipts}
    assert all(i["received_at"] for i in report["items"])
    other_kinds = {"license", "case", "seal"} - {endpoint.kind}
    for other in other_kinds & set(client.app.state.kinds):  # type: ignore[attr-defined]
        assert client.get(f"{url[: url.index('=')]}={other}", headers=AUTH).json()["count"] == 0
    ident, version = ids[0]
    assert client.delete(f"/admin/{endpoint.plural}/{ident}/{version}").status_code == 204
    assert client.delete(f"/admin/{endpoint.plural}/{ident}/{version}").status_code == 404
    assert client.get(url, headers=AUTH).json()["count"] == 2
    (again,) = send(client, endpoint, items[0])
    assert again["status"] == "accepted" and again["duplicate"] is False


def test_reconciliation_refuses_a_bad_day_or_kind(client: TestClient) -> None:
    assert client.get("/api/v1/reconciliation/20240101", headers=AUTH).status_code == 422
    bad_kind = client.get(f"/api/v1/reconciliation/{today()}?kind=nope", headers=AUTH)
    assert bad_kind.status_code == 422


def test_a_partial_fault_stores_every_other_item(client: TestClient, endpoint: Endpoint) -> None:
    client.post("/admin/faults", json={"kind": "partial", "count": 1})
    items = [endpoint.make(f"p{n}", n) for n in range(4)]
    receipts = send(client, endpoint, *items)
    assert [r["status"] for r in receipts] == ["accepted", "error", "accepted", "error"]
    assert all(r["retryable"] and r["error_code"] == "TEMPORARY" for r in receipts[1::2])
    again = send(client, endpoint, *items)
    assert [r["duplicate"] for r in again] == [True, False, True, False]
    assert held(client, endpoint)["versions"] == 4


def test_lose_receipt_then_the_retry_gets_the_original(
    client: TestClient, endpoint: Endpoint
) -> None:
    client.post("/admin/faults", json={"kind": "lose_receipt", "count": 1})
    item = endpoint.make("k1", 1)
    assert client.post(endpoint.path, json={"items": [item]}, headers=AUTH).status_code == 502
    (receipt,) = send(client, endpoint, item)
    assert receipt["duplicate"] is True and held(client, endpoint)["versions"] == 1


SEALS = ENDPOINTS["national-seals"]


def test_a_seal_registered_again_with_a_new_certificate_is_version_2(tmp_path: Path) -> None:
    client = SEALS.client(tmp_path / "state")
    (first,) = send(client, SEALS, seal_item("s1", registration("S-01", "seal one")))
    (renewed,) = send(client, SEALS, seal_item("s2", registration("S-01", "seal two")))
    assert renewed["status"] == "accepted"
    assert renewed["registration_no"] != first["registration_no"]
    listed = client.get("/admin/seals").json()
    assert [(x["identifier"], x["version"]) for x in listed] == [("S-01", 1), ("S-01", 2)]


def test_the_echoed_registration_is_not_part_of_the_content(tmp_path: Path) -> None:
    client = SEALS.client(tmp_path / "state")
    (first,) = send(client, SEALS, seal_item("s1"))
    reg = registration()
    reg["registration"] = {"registration_no": first["registration_no"],
                           "registered_at": "2024-05-06T08:00:00+00:00"}  # fmt: skip
    (again,) = send(client, SEALS, seal_item("s1", reg))
    assert again == {**first, "duplicate": True}


@pytest.mark.parametrize(
    ("where", "changes", "code", "words"),
    [
        ("certificate", {"sha256": "ab" * 32}, "SIGNATURE", "certificate/sha256"),
        ("certificate", {"pem": "-----BEGIN CERTIFICATE-----\nAAAA\n"}, "SIGNATURE", "pem"),
        ("seal", {"validEnd": "2023-12-31T00:00:00+00:00"}, "BUSINESS_RULE", "validEnd"),
        ("picture", {"sha256": "cd" * 32}, "BUSINESS_RULE", "picture/sha256"),
        ("department", {"uscc": "91370602MA3C123460"}, "BUSINESS_RULE", "department/uscc"),
        ("department", {"division": "37"}, "SCHEMA", "registration/department/division"),
    ],
)
def test_seal_checks(
    tmp_path: Path, where: str, changes: dict[str, Any], code: str, words: str
) -> None:
    client = SEALS.client(tmp_path / "state")
    (receipt,) = send(client, SEALS, _seal_with("s1", 1, where, **changes))
    assert receipt["error_code"] == code and words in receipt["message"], receipt["message"]


CATALOG = ENDPOINTS["national-catalog"]


@pytest.mark.parametrize(
    ("change", "code", "words"),
    [
        ({"document": {"format": "pdf", "sha256": "AB" * 32, "size": 1}}, "SCHEMA", "document/sha256"),
        ({"document": {"format": "ofd", "sha256": "ab" * 32, "size": 1}}, "SCHEMA", "document/format"),
        ({"document": {"format": "pdf", "sha256": "ab" * 32, "size": 0}}, "SCHEMA", "document/size"),
        ({"content_b64": "JVBERi0="}, "SCHEMA", "<root>"),
        ({"license": sealed_license(ZZBFJGDM="11370602MB0012343K")}, "BUSINESS_RULE", "ISSUER_CODE"),
    ],
)  # fmt: skip
def test_catalog_checks(tmp_path: Path, change: dict[str, Any], code: str, words: str) -> None:
    client = CATALOG.client(tmp_path / "state")
    (receipt,) = send(client, CATALOG, {**catalog_item("c1"), **change})
    assert receipt["error_code"] == code and words in receipt["message"], receipt["message"]


def test_catalog_is_the_default_reconciliation_kind(tmp_path: Path) -> None:
    client = CATALOG.client(tmp_path / "state")
    send(client, CATALOG, catalog_item("c1"))
    report = client.get(f"/api/v1/reconciliation/{today()}", headers=AUTH).json()
    assert (report["kind"], report["count"]) == ("license", 1)
    stats = client.get("/admin/stats").json()
    assert (stats["licenses"], stats["versions"], stats["cases"], stats["seals"]) == (1, 1, 0, 0)


def test_token_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EHUB_SIM_NATIONAL_TOKEN", "from-env")
    client = TestClient(national.create_app(tmp_path / "state"))
    body = {"items": [catalog_item("c1")]}
    path = CATALOG.path
    assert (
        client.post(path, json=body, headers={"Authorization": "Bearer from-env"}).status_code
        == 200
    )
    assert client.post(path, json=body, headers=AUTH).status_code == 401
    monkeypatch.delenv("EHUB_SIM_NATIONAL_TOKEN")
    dev = TestClient(national.create_app(tmp_path / "dev"))
    assert (
        dev.post(
            path, json=body, headers={"Authorization": "Bearer dev-national-token"}
        ).status_code
        == 200
    )


def test_the_command_line_knows_the_national_simulator() -> None:
    from simulators.__main__ import build_parser

    args = build_parser().parse_args(
        ["national", "--state", "x", "--port", "0", "--max-items", "7"]
    )
    assert (args.command, args.port, args.max_items, args.rate_limit) == ("national", 0, 7, 200.0)
    assert args.func.__name__ == "_national"
