"""The housing REST simulator: auth, expiry, rate limit, both paginations, faults, CLI."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from simulators import housing_data, housing_store
from simulators.housing import DEV_CLIENT_ID, DEV_CLIENT_SECRET, create_app, parse_since

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-housing-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
COUNT = 500


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("housing") / "hz.db"
    housing_store.generate(db, COUNT, seed=3, defect_rate=0.1)
    return db


@pytest.fixture
def client(dataset: Path) -> Iterator[TestClient]:
    with TestClient(create_app(dataset, token=TOKEN, rate=None)) as c:
        yield c


def _all_by_pages(client: TestClient, size: int, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    page = 1
    while True:
        r = client.get(
            "/api/v1/permits", params={"page": page, "page_size": size, **params}, headers=AUTH
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["meta"]["page"] == page and body["meta"]["page_size"] == size
        items += body["data"]["items"]
        if not body["data"]["items"]:
            assert body["meta"]["next_cursor"] is None
            return items
        page += 1


def _all_by_cursor(client: TestClient, size: int, **params: Any) -> list[dict[str, Any]]:
    r = client.get("/api/v1/permits", params={"page_size": size, **params}, headers=AUTH)
    items: list[dict[str, Any]] = []
    while True:
        assert r.status_code == 200, r.text
        body = r.json()
        items += body["data"]["items"]
        cursor = body["meta"]["next_cursor"]
        if cursor is None:
            return items
        assert len(body["data"]["items"]) == size
        r = client.get(
            "/api/v1/permits", params={"cursor": cursor, "page_size": size}, headers=AUTH
        )
        assert r.json()["meta"]["page"] is None


def test_both_paginations_return_every_item_once_in_order(client: TestClient) -> None:
    expected = list(housing_data.iter_items(COUNT, seed=3, defect_rate=0.1))
    by_pages = _all_by_pages(client, 37)
    by_cursor = _all_by_cursor(client, 37)
    assert by_pages == expected
    assert by_cursor == expected
    r = client.get("/api/v1/permits", params={"page": 14, "page_size": 37}, headers=AUTH)
    last = r.json()
    assert len(last["data"]["items"]) == COUNT - 13 * 37
    assert last["meta"]["next_cursor"] is None
    assert last["data"]["total"] == COUNT


def test_updated_since_is_inclusive_and_keeps_ties(client: TestClient) -> None:
    expected = list(housing_data.iter_items(COUNT, seed=3, defect_rate=0.1))
    since = expected[100]["updatedAt"]  # shared by several ids
    want = [i for i in expected if i["updatedAt"] >= since]
    assert want[0]["id"] < expected[100]["id"]
    r = client.get("/api/v1/permits", params={"updated_since": since, "page_size": 5}, headers=AUTH)
    assert r.json()["data"]["total"] == len(want)
    assert _all_by_cursor(client, 50, updated_since=since) == want
    assert _all_by_pages(client, 50, updated_since=since) == want
    # An unencoded "+" arrives as a space; UTC and naive (+08:00) forms mean the same moment.
    assert parse_since(since.replace("+", " ")) == since
    assert parse_since("2024-01-01T00:00:07Z") == "2024-01-01T08:00:07+08:00"
    assert parse_since("2024-01-01T08:00:06.5") == "2024-01-01T08:00:07+08:00"


def test_touched_items_come_again_after_the_watermark(dataset: Path, tmp_path: Path) -> None:
    db = tmp_path / "touch.db"
    db.write_bytes(dataset.read_bytes())
    with TestClient(create_app(db, token=TOKEN, rate=None)) as c:
        body = c.get("/api/v1/permits", params={"page": 25, "page_size": 20}, headers=AUTH).json()
        watermark = body["data"]["items"][-1]["updatedAt"]
        assert housing_store.touch(db, [7, 42]) == 2
        newer = _all_by_cursor(c, 10, updated_since=watermark)
    assert [i["id"] for i in newer][-2:] == [7, 42]
    assert all(i["updatedAt"] > watermark for i in newer[-2:])


def test_bad_parameters_are_400(client: TestClient) -> None:
    for params in (
        {"page": 0},
        {"page_size": 1001},
        {"page": "x"},
        {"cursor": "not-a-cursor"},
        {"updated_since": "yesterday"},
        {"cursor": "WyIyMDI0IiwxLG51bGxd", "page": 2},
    ):
        r = client.get("/api/v1/permits", params=params, headers=AUTH)
        assert r.status_code == 400, params
        assert r.json()["error"] == "BAD_REQUEST"


def test_orgs_and_single_permit(client: TestClient) -> None:
    org = client.get("/api/v1/orgs/ZJJ-0102", headers=AUTH).json()
    assert org == next(o for o in housing_data.orgs() if o["orgId"] == "ZJJ-0102")
    assert client.get("/api/v1/orgs/ZJJ-9999", headers=AUTH).status_code == 404
    listed = client.get("/api/v1/orgs", headers=AUTH).json()["data"]["items"]
    assert len(listed) == len(housing_data.orgs())
    assert client.get("/api/v1/permits/3", headers=AUTH).json()["id"] == 3
    assert client.get("/api/v1/permits/100000", headers=AUTH).status_code == 404
    assert client.get("/api/v1/orgs/ZJJ-0102").status_code == 401


def test_missing_wrong_and_issued_tokens(dataset: Path) -> None:
    with TestClient(create_app(dataset, token=TOKEN, rate=None, client_secret="s3")) as c:
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {TOKEN}"}):
            r = c.get("/api/v1/permits", headers=headers)
            assert r.status_code == 401 and r.json()["error"] == "UNAUTHORIZED"
            assert r.headers["WWW-Authenticate"] == "Bearer"
        bad = c.post("/api/v1/token", data={"client_id": DEV_CLIENT_ID, "client_secret": "x"})
        assert bad.status_code == 401 and bad.json()["error"] == "INVALID_CLIENT"
        form = c.post(
            "/api/v1/token",
            data={"grant_type": "client_credentials", "client_id": "ehub", "client_secret": "s3"},
        ).json()
        as_json = c.post("/api/v1/token", json={"client_id": "ehub", "client_secret": "s3"}).json()
        assert form["token_type"] == "Bearer" and form["expires_in"] == 3600
        assert form["access_token"] != as_json["access_token"]
        for grant in (form, as_json):
            auth = {"Authorization": f"Bearer {grant['access_token']}"}
            assert c.get("/api/v1/permits", headers=auth).status_code == 200
        stats = c.get("/admin/stats").json()
        assert stats["tokens_issued"] == 2 and stats["unauthorized"] == 3
        assert stats["token_rejected"] == 1 and stats["dataset"]["count"] == COUNT


def test_default_client_secret(dataset: Path) -> None:
    with TestClient(create_app(dataset, rate=None)) as c:
        grant = c.post(
            "/api/v1/token", json={"client_id": DEV_CLIENT_ID, "client_secret": DEV_CLIENT_SECRET}
        )
        assert grant.status_code == 200
        assert c.get(
            "/api/v1/orgs", headers={"Authorization": "Bearer dev-housing-token"}
        ).is_success


def test_tokens_expire_by_age_and_on_demand(dataset: Path) -> None:
    with TestClient(create_app(dataset, token=TOKEN, rate=None, token_ttl=0.3)) as c:
        creds = {"client_id": DEV_CLIENT_ID, "client_secret": DEV_CLIENT_SECRET}
        auth = {
            "Authorization": f"Bearer {c.post('/api/v1/token', json=creds).json()['access_token']}"
        }
        assert c.get("/api/v1/permits", headers=auth).status_code == 200
        time.sleep(0.4)
        r = c.get("/api/v1/permits", headers=auth)
        assert r.status_code == 401 and r.json()["error"] == "TOKEN_EXPIRED"
        assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]

    with TestClient(create_app(dataset, token=TOKEN, rate=None)) as c:
        auth = {
            "Authorization": f"Bearer {c.post('/api/v1/token', json=creds).json()['access_token']}"
        }
        assert c.post("/admin/faults", json={"expire_tokens": True}).json()["tokens_expired"] == 1
        assert c.get("/api/v1/permits", headers=auth).json()["error"] == "TOKEN_EXPIRED"
        assert c.get("/api/v1/permits", headers=AUTH).status_code == 200  # static still fine
        c.post("/admin/faults", json={"expire_tokens": True, "include_static": True})
        assert c.get("/api/v1/permits", headers=AUTH).json()["error"] == "TOKEN_EXPIRED"
        assert c.delete("/admin/faults").status_code == 204
        assert c.get("/api/v1/permits", headers=AUTH).status_code == 200
        assert c.get("/admin/stats").json()["expired"] == 2


def test_rate_limit_answers_429_with_retry_after(dataset: Path) -> None:
    with TestClient(create_app(dataset, token=TOKEN, rate=2.0)) as c:
        codes = [c.get("/api/v1/orgs", headers=AUTH) for _ in range(3)]
        assert [r.status_code for r in codes] == [200, 200, 429]
        assert codes[2].json()["error"] == "RATE_LIMITED"
        assert int(codes[2].headers["Retry-After"]) >= 1
        # The bucket is per token: another token still passes.
        creds = {"client_id": DEV_CLIENT_ID, "client_secret": DEV_CLIENT_SECRET}
        other = c.post("/api/v1/token", json=creds).json()["access_token"]
        assert c.get("/api/v1/orgs", headers={"Authorization": f"Bearer {other}"}).is_success
        assert c.get("/admin/stats").json()["rate_limited"] == 1


def test_injected_status_latency_and_stats(client: TestClient) -> None:
    set_ = client.post("/admin/faults", json={"status": 503, "count": 2})
    assert set_.json()["fault"]["remaining"] == 2
    first, second, third = (client.get("/api/v1/permits", headers=AUTH) for _ in range(3))
    assert [first.status_code, second.status_code, third.status_code] == [503, 503, 200]
    assert first.headers["Retry-After"] == "1" and first.json()["error"] == "INJECTED"
    client.post("/admin/faults", json={"status": 500, "count": 1})
    r = client.get("/api/v1/permits", headers=AUTH)
    assert r.status_code == 500 and "Retry-After" not in r.headers
    client.post("/admin/faults", json={"latency_ms": 250, "count": 1})
    start = time.monotonic()
    assert client.get("/api/v1/orgs", headers=AUTH).status_code == 200
    assert time.monotonic() - start >= 0.25
    stats = client.get("/admin/stats").json()
    assert stats["faults"] == 4 and stats["fault"] is None
    assert stats["requests"] == 5 and stats["ok"] == 2
    assert client.post("/admin/faults", json={"status": 503, "reset": True}).status_code == 422
    report = client.get("/admin/report").json()
    assert report["count"] == COUNT and sum(report["expected"].values()) == 50


def _lines(stream: Any, into: queue.Queue[str]) -> None:
    for line in stream:
        into.put(line)


def test_cli_generates_serves_resets_and_stops(tmp_path: Path) -> None:
    db = tmp_path / "cli.db"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "simulators",
            "housing",
            "--port",
            "0",
            "--db",
            str(db),
            "--count",
            "150",
            "--seed",
            "8",
            "--defect-rate",
            "0.1",
            "--token",
            TOKEN,
            "--report",
            str(tmp_path / "report.json"),
            "--log-level",
            "critical",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_lines, args=(proc.stdout, lines), daemon=True).start()
    try:
        deadline = time.monotonic() + 60
        while True:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if line.startswith("{"):
                ready = json.loads(line)
                break
        assert ready["ready"] is True and ready["generated"] is True
        assert ready["expected"] == housing_data.report(150, seed=8, defect_rate=0.1).expected
        full = json.loads((tmp_path / "report.json").read_text("utf-8"))
        assert len(full["defective_keys"]["E_DUPLICATE"]) == full["expected"]["E_DUPLICATE"]
        with httpx.Client(base_url=ready["url"], timeout=5) as http:
            page = http.get("/api/v1/permits", params={"page_size": 1000}, headers=AUTH).json()
            assert [i["id"] for i in page["data"]["items"]] == list(range(1, 151))
            http.post("/admin/faults", json={"reset": True, "count": 1})
            with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
                http.get("/api/v1/permits", headers=AUTH)
            assert http.get("/api/v1/orgs/ZJJ-0100", headers=AUTH).is_success
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)

    out = subprocess.run(
        [sys.executable, "-m", "simulators", "housing", "--db", str(db), "--count", "150",
         "--seed", "8", "--defect-rate", "0.1", "--generate-only"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    again = json.loads(out.stdout)
    assert again["generated"] is False and again["expected"] == ready["expected"]
