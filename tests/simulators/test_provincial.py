"""The provincial platform simulator through FastAPI's TestClient."""

from __future__ import annotations

import base64
import hashlib
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from simulators.provincial import create_app
from tests.simulators.payloads import (
    AUTH,
    FAKE_PDF,
    TOKEN,
    document,
    identifier,
    item,
    license_json,
)

BATCH = "/api/v1/licenses/batch"


def make_client(state_dir: Path, **kwargs: Any) -> TestClient:
    kwargs.setdefault("token", TOKEN)
    kwargs.setdefault("signature_check", "structural")
    return TestClient(create_app(state_dir, **kwargs))


@pytest.fixture
def client(state_dir: Path) -> TestClient:
    return make_client(state_dir)


def send(client: TestClient, *items: dict) -> list[dict[str, Any]]:
    response = client.post(BATCH, json={"items": list(items)}, headers=AUTH)
    assert response.status_code == 200, response.text
    receipts: list[dict[str, Any]] = response.json()["receipts"]
    assert [r["idempotency_key"] for r in receipts] == [i["idempotency_key"] for i in items]
    return receipts


def stats(client: TestClient) -> dict[str, Any]:
    result: dict[str, Any] = client.get("/admin/stats").json()
    return result


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


@pytest.mark.parametrize("header", [None, "Bearer wrong", f"Basic {TOKEN}", TOKEN])
def test_batch_needs_the_bearer_token(client: TestClient, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    response = client.post(BATCH, json={"items": [item("k1")]}, headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert stats(client)["versions"] == 0
    assert stats(client)["unauthorized"] == 1


def test_token_from_environment(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EHUB_SIM_PROVINCIAL_TOKEN", "from-env")
    client = TestClient(create_app(state_dir, signature_check="structural"))
    ok = client.post(
        BATCH, json={"items": [item("k1")]}, headers={"Authorization": "Bearer from-env"}
    )
    assert ok.status_code == 200
    assert client.post(BATCH, json={"items": [item("k2")]}, headers=AUTH).status_code == 401


def test_accepts_a_valid_item_and_serves_it_back(client: TestClient) -> None:
    (receipt,) = send(client, item("k1"))
    assert receipt["status"] == "accepted" and receipt["duplicate"] is False
    assert receipt["receipt_id"]
    ident = license_json()["ZZBS"]
    held = client.get(f"/api/v1/licenses/{ident}", headers=AUTH).json()
    assert held["versions"][0]["license"] == license_json()
    assert held["versions"][0]["receipt_id"] == receipt["receipt_id"]
    assert held["versions"][0]["document_sha256"] == hashlib.sha256(FAKE_PDF).hexdigest()
    assert client.get(f"/api/v1/licenses/{ident}").status_code == 401
    assert client.get("/api/v1/licenses/nope", headers=AUTH).status_code == 404
    listed = client.get("/admin/licenses").json()
    assert [(x["identifier"], x["version"], x["receipt_id"]) for x in listed] == [
        (ident, 1, receipt["receipt_id"])
    ]


def _bad_base64_doc() -> dict[str, str]:
    return {"format": "pdf", "sha256": "0" * 64, "content_b64": "%%%not-base64"}


UNSIGNED_PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n"
WRONG_SUBFILTER = FAKE_PDF.replace(b"/ETSI.CAdES.detached", b"/adbe.pkcs7.detached")
CASES: dict[str, tuple[dict[str, Any], dict[str, str] | None, str]] = {
    "SCHEMA-missing": (dict(ZZMC=None), None, "SCHEMA"),
    "SCHEMA-date": (dict(ZZBFRQ="2023-02-30"), None, "SCHEMA"),
    "SCHEMA-extra-key": (dict(SURPRISE="x"), None, "SCHEMA"),
    "IDENTIFIER-check": (dict(ZZBS=identifier("2024000001")[:-1] + "Q"), None, "IDENTIFIER"),
    "IDENTIFIER-issuer": (
        dict(ZZBS=identifier("2024000001", issuer="11430000006122244L")),
        None,
        "IDENTIFIER",
    ),
    "ISSUER_CODE": (dict(ZZBFJGDM="11370602MB0012343K"), None, "ISSUER_CODE"),
    "HOLDER_CODE-uscc": (dict(CZZTDM="91370602MA3C123460"), None, "HOLDER_CODE"),
    "HOLDER_CODE-id": (dict(CZZTDMLXDM="111", CZZTDM="110105194912310021"), None, "HOLDER_CODE"),
    "VALIDITY_WINDOW": (dict(ZZYXQJZRQ="2019-12-31"), None, "VALIDITY_WINDOW"),
    "DOCUMENT_HASH": ({}, {**document(), "sha256": "ab" * 32}, "DOCUMENT_HASH"),
    "DOCUMENT_INVALID-b64": ({}, _bad_base64_doc(), "DOCUMENT_INVALID"),
    "DOCUMENT_INVALID-ofd": ({}, {**document(), "format": "ofd"}, "DOCUMENT_INVALID"),
    "DOCUMENT_INVALID-notpdf": ({}, document(b"PK\x03\x04zip"), "DOCUMENT_INVALID"),
    "UNSIGNED": ({}, document(UNSIGNED_PDF), "UNSIGNED"),
    "UNSIGNED-subfilter": ({}, document(WRONG_SUBFILTER), "UNSIGNED"),
}


@pytest.mark.parametrize("case", CASES)
def test_rejections_name_the_check(client: TestClient, case: str) -> None:
    changes, doc, code = CASES[case]
    lic = license_json()
    for key, value in changes.items():
        if value is None:
            del lic[key]
        else:
            lic[key] = value
    (receipt,) = send(client, item("k1", lic, doc))
    assert receipt["status"] == "rejected"
    assert receipt["error_code"] == code, receipt["message"]
    assert "receipt_id" not in receipt and receipt["message"]
    assert stats(client)["versions"] == 0
    assert stats(client)["rejected"] == 1


def test_builtin_rules_when_the_schema_file_is_absent(state_dir: Path, tmp_path: Path) -> None:
    client = make_client(state_dir, schema_path=tmp_path / "absent.json")
    assert stats(client)["schema"] == "builtin"
    lic = license_json()
    del lic["ZZMC"]
    bad, good = send(client, item("bad", lic), item("good"))
    assert bad["error_code"] == "SCHEMA" and "ZZMC" in bad["message"]
    assert good["status"] == "accepted"


def test_repeated_key_returns_the_original_receipt(client: TestClient) -> None:
    (first,) = send(client, item("k1"))
    again, other = send(client, item("k1"), item("k2", license_json("2024000002")))
    assert again == {**first, "duplicate": True}
    assert other["status"] == "accepted" and other["receipt_id"] != first["receipt_id"]
    s = stats(client)
    assert (s["versions"], s["licenses"], s["accepted"], s["duplicates"]) == (2, 2, 2, 1)


def test_same_key_twice_in_one_batch(client: TestClient) -> None:
    first, second = send(client, item("k1"), item("k1"))
    assert first["duplicate"] is False and second == {**first, "duplicate": True}


def test_key_reused_for_other_content_is_refused(client: TestClient) -> None:
    send(client, item("k1"))
    (receipt,) = send(client, item("k1", license_json(CZZT="改名后的公司")))
    assert receipt["error_code"] == "IDEMPOTENCY_MISMATCH"


def test_same_version_under_another_key_is_a_conflict(client: TestClient) -> None:
    (first,) = send(client, item("k1"))
    (clash,) = send(client, item("k2"))
    assert clash["status"] == "rejected" and clash["error_code"] == "CONFLICT"
    assert first["receipt_id"] in clash["message"]
    (v2,) = send(client, item("k3", license_json(bbh=2)))
    assert v2["status"] == "accepted"
    assert (stats(client)["licenses"], stats(client)["versions"]) == (1, 2)


def test_envelope_limits(client: TestClient) -> None:
    too_many = {"items": [item(f"k{n}", license_json(f"S{n:07d}")) for n in range(101)]}
    assert client.post(BATCH, json=too_many, headers=AUTH).status_code == 413
    bodies: list[Any] = [{}, {"items": []}, {"items": [{"license": {}}]}, [1, 2]]
    for body in bodies:
        assert client.post(BATCH, json=body, headers=AUTH).status_code == 422
    bad_json = client.post(BATCH, content=b"{nope", headers=AUTH)
    assert bad_json.status_code == 422
    assert stats(client)["versions"] == 0
    hundred = [item(f"k{n}", license_json(f"S{n:07d}")) for n in range(100)]
    assert all(r["status"] == "accepted" for r in send(client, *hundred))


def test_delete_lets_the_same_key_store_again(client: TestClient) -> None:
    (first,) = send(client, item("k1"))
    ident = license_json()["ZZBS"]
    assert client.delete(f"/admin/licenses/{ident}/1").status_code == 204
    assert client.delete(f"/admin/licenses/{ident}/1").status_code == 404
    assert stats(client)["versions"] == 0
    (again,) = send(client, item("k1"))
    assert again["status"] == "accepted" and again["duplicate"] is False
    assert again["receipt_id"] != first["receipt_id"]


def test_state_survives_a_restart(state_dir: Path) -> None:
    (first,) = send(make_client(state_dir), item("k1"))
    restarted = make_client(state_dir)
    (again,) = send(restarted, item("k1"))
    assert again == {**first, "duplicate": True}
    assert stats(restarted)["requests"] == 2


def test_stats_count_requests_items_and_outcomes(client: TestClient) -> None:
    lic = license_json("2024000009", ZZBS=identifier("2024000009")[:-1] + "Z")
    send(client, item("a"), item("b", license_json("2024000002")), item("c", lic))
    send(client, item("a"))
    client.post(BATCH, json={"items": [item("x")]})
    s = stats(client)
    assert s["requests"] == 3 and s["items"] == 4 and s["unauthorized"] == 1
    assert (s["accepted"], s["rejected"], s["duplicates"]) == (2, 1, 1)
    assert (s["licenses"], s["versions"]) == (2, 2)


def test_integrity_mode_verifies_real_signatures(state_dir: Path, signed_pdf: bytes) -> None:
    client = make_client(state_dir, signature_check="integrity")
    at = signed_pdf.index(b"ReportLab")  # inside the signed byte range; same length
    tampered = signed_pdf[:at] + b"ReportLaX" + signed_pdf[at + 9 :]
    good, altered, fake = send(
        client,
        item("good", license_json("2024000001"), document(signed_pdf)),
        item("altered", license_json("2024000002"), document(tampered)),
        item("fake", license_json("2024000003"), document(FAKE_PDF)),
    )
    assert good["status"] == "accepted", good.get("message")
    assert altered["error_code"] == "SIGNATURE_INVALID"
    assert fake["error_code"] == "SIGNATURE_INVALID"
    started = time.perf_counter()
    send(
        client, *(item(f"p{n}", license_json(f"P{n:07d}"), document(signed_pdf)) for n in range(20))
    )
    assert (time.perf_counter() - started) / 20 < 0.1, "integrity check should stay cheap"


def test_signed_pdf_fixture_is_really_pades(signed_pdf: bytes) -> None:
    assert b"/ByteRange" in signed_pdf and b"/ETSI.CAdES.detached" in signed_pdf
    assert base64.b64decode(document(signed_pdf)["content_b64"]) == signed_pdf
