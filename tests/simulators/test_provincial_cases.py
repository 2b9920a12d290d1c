"""What the provincial platform gained besides licenses: the case endpoints, the return
interface and the store holding several kinds (the shared batch behaviour of
``/api/v1/cases/batch`` is tested in test_national.py, endpoint ``provincial-cases``)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from simulators.provincial import create_app
from tests.simulators.payloads import item, license_json
from tests.simulators.platform_payloads import AUTH, case_item, case_json

CASES = "/api/v1/cases/batch"
LICENSES = "/api/v1/licenses/batch"


@pytest.fixture
def client(state_dir: Path) -> TestClient:
    return TestClient(create_app(state_dir, token="test-token", signature_check="structural"))


def post(client: TestClient, path: str, *items: dict[str, Any]) -> list[dict[str, Any]]:
    response = client.post(path, json={"items": list(items)}, headers=AUTH)
    assert response.status_code == 200, response.text
    receipts: list[dict[str, Any]] = response.json()["receipts"]
    return receipts


def test_case_versions_are_served_back(client: TestClient) -> None:
    (v1,) = post(client, CASES, case_item("c1"))
    (v2,) = post(client, CASES, case_item("c2", case_json(bbh=2, HCP="4")))
    number = case_json()["BJBH"]
    held = client.get(f"/api/v1/cases/{number}", headers=AUTH).json()
    assert held["identifier"] == number
    assert [(v["version"], v["receipt_id"]) for v in held["versions"]] == [
        (1, v1["receipt_id"]),
        (2, v2["receipt_id"]),
    ]
    assert held["versions"][1]["case"] == case_json(bbh=2, HCP="4")
    assert client.get(f"/api/v1/cases/{number}").status_code == 401
    assert client.get("/api/v1/cases/nope", headers=AUTH).status_code == 404


def test_licenses_and_cases_have_their_own_limits(client: TestClient) -> None:
    cases = [case_item(f"c{n}", case_json(f"{n:04d}")) for n in range(1001)]
    assert client.post(CASES, json={"items": cases}, headers=AUTH).status_code == 413
    assert len(post(client, CASES, *cases[:1000])) == 1000
    licenses = [item(f"k{n}", license_json(f"S{n:07d}")) for n in range(101)]
    assert client.post(LICENSES, json={"items": licenses}, headers=AUTH).status_code == 413


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"BJZT": "completed", "BJSJ": None}, "BJSJ"),
        ({"SLSJ": "2024-05-06T08:59:59+08:00"}, "SLSJ"),
        ({"BJZT": "accepted", "SPSJ": None, "BJSJ": None}, "granted"),
    ],
)
def test_case_business_rules(client: TestClient, changes: dict[str, Any], words: str) -> None:
    (receipt,) = post(client, CASES, case_item("c1", case_json(**changes)))
    assert receipt["error_code"] == "BUSINESS_RULE" and words in receipt["message"]


def test_an_unfinished_case_passes_the_rules(client: TestClient) -> None:
    open_case = case_json(BJZT="accepted", SPSJ=None, BJSJ=None, BJJG=None, HCP=None)
    (receipt,) = post(client, CASES, case_item("c1", open_case))
    assert receipt["status"] == "accepted", receipt


def test_kinds_do_not_mix(client: TestClient) -> None:
    post(client, LICENSES, item("same-key"))
    (case,) = post(client, CASES, case_item("same-key"))
    assert case["status"] == "accepted" and case["duplicate"] is False, "keys are per kind"
    stats = client.get("/admin/stats").json()
    assert (stats["licenses"], stats["versions"], stats["cases"]) == (1, 1, 1)
    assert stats["kinds"]["case"]["versions"] == 1
    assert len(client.get("/admin/licenses").json()) == 1
    assert len(client.get("/admin/cases").json()) == 1


def test_the_return_interface_pages_by_division(client: TestClient) -> None:
    post(client, LICENSES, item("l1"), item("l2", license_json("2024000002", CZZTQHDM="370102")))
    post(client, CASES, case_item("c1"), case_item("c2", case_json("0002", XZQHDM="370211")))
    first = client.get("/api/v1/return/3706?limit=1", headers=AUTH).json()
    assert [(i["kind"], i["division"]) for i in first["items"]] == [("license", "370602")]
    rest = client.get(f"/api/v1/return/3706?after={first['next']}", headers=AUTH).json()
    assert [(i["kind"], i["division"]) for i in rest["items"]] == [("case", "370602")]
    assert rest["items"][0]["record"] == case_json()
    assert rest["next"] > first["next"]
    done = client.get(f"/api/v1/return/3706?after={rest['next']}", headers=AUTH).json()
    assert done == {"division": "3706", "items": [], "next": rest["next"]}
    province = client.get("/api/v1/return/37?limit=10", headers=AUTH).json()
    assert len(province["items"]) == 4
    cursors = [i["cursor"] for i in province["items"]]
    assert cursors == sorted(cursors)
    assert client.get("/api/v1/return/37").status_code == 401
    assert client.get("/api/v1/return/shandong", headers=AUTH).status_code == 422
    assert client.get("/api/v1/return/37?limit=0", headers=AUTH).status_code == 422


def test_a_state_dir_of_the_first_simulator_is_migrated(state_dir: Path) -> None:
    state_dir.mkdir(parents=True)
    lic = license_json()
    with sqlite3.connect(state_dir / "provincial.sqlite3") as db:
        db.execute(
            "CREATE TABLE licenses (identifier TEXT NOT NULL, version INTEGER NOT NULL,"
            " receipt_id TEXT NOT NULL UNIQUE, idempotency_key TEXT NOT NULL UNIQUE,"
            " fingerprint TEXT NOT NULL, license_json TEXT NOT NULL, document_sha256 TEXT NOT"
            " NULL, document_size INTEGER NOT NULL, received_at TEXT NOT NULL,"
            " PRIMARY KEY (identifier, version))"
        )
        db.execute(
            "INSERT INTO licenses VALUES (?, 1, 'RCPT-old', 'old-key', 'f', ?, 'ab', 7,"
            " '2024-01-01T00:00:00.000+00:00')",
            (lic["ZZBS"], '{"CZZTQHDM": "370602"}'),
        )
    client = TestClient(create_app(state_dir, token="test-token", signature_check="structural"))
    listed = client.get("/admin/licenses").json()
    assert [(x["identifier"], x["receipt_id"]) for x in listed] == [(lic["ZZBS"], "RCPT-old")]
    held = client.get(f"/api/v1/licenses/{lic['ZZBS']}", headers=AUTH).json()["versions"][0]
    assert (held["document_sha256"], held["size"]) == ("ab", 7)
    (clash,) = post(client, LICENSES, item("new-key"))
    assert clash["error_code"] == "CONFLICT" and "RCPT-old" in clash["message"]
    report = client.get("/api/v1/reconciliation/2024-01-01", headers=AUTH).json()
    assert (report["kind"], report["count"]) == ("license", 1)
