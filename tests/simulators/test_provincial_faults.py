"""Fault injection and rate limiting of the provincial platform simulator."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from simulators.provincial import create_app
from tests.simulators.payloads import AUTH, TOKEN, item, license_json

BATCH = "/api/v1/licenses/batch"


def make_client(state_dir: Path, **kwargs: Any) -> TestClient:
    return TestClient(create_app(state_dir, token=TOKEN, signature_check="structural", **kwargs))


@pytest.fixture
def client(state_dir: Path) -> TestClient:
    return make_client(state_dir)


def post(client: TestClient, *items: dict) -> Any:
    return client.post(BATCH, json={"items": list(items)}, headers=AUTH)


def versions(client: TestClient) -> int:
    n: int = client.get("/admin/stats").json()["versions"]
    return n


@pytest.mark.parametrize(
    ("kind", "status", "retry_after"),
    [("http500", 500, False), ("http503", 503, True), ("http429", 429, True)],
)
def test_error_faults_store_nothing(
    client: TestClient, kind: str, status: int, retry_after: bool
) -> None:
    assert client.post("/admin/faults", json={"kind": kind}).status_code == 200
    response = post(client, item("k1"))
    assert response.status_code == status
    assert ("Retry-After" in response.headers) is retry_after
    if retry_after:
        assert int(response.headers["Retry-After"]) >= 1
    assert versions(client) == 0
    assert client.delete("/admin/faults").status_code == 204
    assert post(client, item("k1")).status_code == 200
    assert versions(client) == 1


def test_lose_receipt_stores_then_the_retry_gets_the_original_receipt(client: TestClient) -> None:
    client.post("/admin/faults", json={"kind": "lose_receipt", "count": 1})
    lost = post(client, item("k1"), item("k2", license_json("2024000002")))
    assert lost.status_code == 502
    assert versions(client) == 2
    held = {x["identifier"]: x["receipt_id"] for x in client.get("/admin/licenses").json()}
    retry = post(client, item("k1"), item("k2", license_json("2024000002")))
    assert retry.status_code == 200, "count=1 fault must have cleared itself"
    receipts = retry.json()["receipts"]
    assert all(r["status"] == "accepted" and r["duplicate"] for r in receipts)
    assert {r["receipt_id"] for r in receipts} == set(held.values())
    assert versions(client) == 2
    assert client.get("/admin/stats").json()["fault"] is None


def test_fault_count_and_rate_are_deterministic(state_dir: Path, tmp_path: Path) -> None:
    def pattern(where: Path) -> list[int]:
        c = make_client(where)
        c.post("/admin/faults", json={"kind": "http500", "rate": 0.5, "seed": 42, "count": 5})
        return [post(c, item(f"k{n}", license_json(f"S{n:07d}"))).status_code for n in range(30)]

    first = pattern(state_dir)
    assert first == pattern(tmp_path / "other")
    assert first.count(500) == 5 and first.count(200) == 25
    assert first[:5] != [500] * 5 or first[5:10] != [200] * 5  # drawn, not the first N


def test_slow_and_timeout_delay_then_store(client: TestClient) -> None:
    for kind in ("slow", "timeout"):
        client.post("/admin/faults", json={"kind": kind, "delay": 0.3, "count": 1})
        started = time.perf_counter()
        response = post(client, item(f"k-{kind}", license_json(f"{kind.upper()}01")))
        assert time.perf_counter() - started >= 0.3
        assert response.status_code == 200
    assert versions(client) == 2


def test_fault_request_is_validated(client: TestClient) -> None:
    assert client.post("/admin/faults", json={"kind": "meteor"}).status_code == 422
    assert client.post("/admin/faults", json={"kind": "http500", "rate": 2}).status_code == 422
    described = client.post("/admin/faults", json={"kind": "reset", "rate": 0.25}).json()
    assert described["kind"] == "reset" and described["rate"] == 0.25
    assert client.get("/admin/stats").json()["fault"]["kind"] == "reset"


def test_faults_come_after_authentication(client: TestClient) -> None:
    client.post("/admin/faults", json={"kind": "http500"})
    assert client.post(BATCH, json={"items": [item("k1")]}).status_code == 401
    assert client.get("/admin/stats").json()["faults"] == 0


def test_rate_limit_answers_429_with_retry_after(state_dir: Path) -> None:
    client = make_client(state_dir, rate_limit=2.0)
    codes = [post(client, item(f"k{n}", license_json(f"S{n:07d}"))) for n in range(4)]
    assert [r.status_code for r in codes[:2]] == [200, 200]
    limited = [r for r in codes[2:] if r.status_code == 429]
    assert limited, "a burst above 2 requests/s must be limited"
    assert int(limited[0].headers["Retry-After"]) >= 1
    assert client.get("/admin/stats").json()["rate_limited"] == len(limited)
    time.sleep(1.05)
    assert post(client, item("later", license_json("LATER01"))).status_code == 200


def test_a_fault_mix_fires_each_kind_at_its_rate(client: TestClient) -> None:
    too_much = {"faults": [{"kind": "http500", "rate": 0.6}, {"kind": "reset", "rate": 0.6}]}
    assert client.post("/admin/faults/mix", json=too_much).status_code == 422
    mix = {"faults": [{"kind": "http500", "rate": 0.3}, {"kind": "http503", "rate": 0.3}],
           "seed": 1}  # fmt: skip
    assert client.post("/admin/faults/mix", json=mix).status_code == 200
    codes = [post(client, item(f"m{n}", license_json(f"M{n:07d}"))).status_code
             for n in range(200)]  # fmt: skip
    fired = client.get("/admin/stats").json()["fault"]["fired_by_kind"]
    assert codes.count(500) == fired["http500"] and codes.count(503) == fired["http503"]
    assert 40 <= fired["http500"] <= 80 and 40 <= fired["http503"] <= 80  # ~60 each of 200
    assert versions(client) == codes.count(200)


def test_a_partial_failure_stores_every_other_item_and_asks_for_the_rest_again(
    client: TestClient,
) -> None:
    client.post("/admin/faults", json={"kind": "partial", "count": 1})
    items = [item(f"p{n}", license_json(f"P{n:07d}")) for n in range(4)]
    receipts = post(client, *items).json()["receipts"]
    assert [r["status"] for r in receipts] == ["accepted", "error", "accepted", "error"]
    assert all(r["retryable"] for r in receipts if r["status"] == "error")
    assert versions(client) == 2
    again = post(client, *items).json()["receipts"]
    assert [r["status"] for r in again] == ["accepted"] * 4
    assert [r["duplicate"] for r in again] == [True, False, True, False]
    assert versions(client) == 4
