"""The QR code of a sealed license leads to the verification endpoint, which reports it
valid; after the department revokes it at the source and the hub ingests and seals
the new version, the same URL reports it revoked (its document still intact)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select, text

from ehub.pipeline import seal
from ehub.store.db import Store
from ehub.store.models import LicenseRow, SignatureRow
from ehub.verify_api import create_app
from tests.ehub.pipeline_support import MarketEnv, ingest_market, market_env

Env = MarketEnv


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    e = market_env(
        tmp_path, monkeypatch, count=4, seed=11, verify_url="https://verify.ehub.test/verify"
    )
    seal.run(e.settings, e.store)
    yield e
    e.store.dispose()


def _first_sealed(store: Store) -> tuple[str, Path]:
    with store.session() as s:
        ident, path = s.execute(
            select(LicenseRow.identifier, SignatureRow.path)
            .join(SignatureRow, SignatureRow.license_id == LicenseRow.id)
            .where(SignatureRow.format == "pades")
            .order_by(LicenseRow.id)
            .limit(1)
        ).one()
    return ident, Path(path)


def _qr(pdf: Path, tmp: Path) -> str:
    subprocess.run(["pdftoppm", "-r", "150", "-png", "-singlefile", str(pdf), str(tmp / "page")],
                   check=True)  # fmt: skip
    out = subprocess.run(["zbarimg", "--quiet", "--raw", str(tmp / "page.png")],
                         capture_output=True, text=True, check=True)  # fmt: skip
    return out.stdout.strip()


def test_qr_code_leads_to_a_report_valid_then_revoked(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ident, pdf = _first_sealed(env.store)
    url = _qr(pdf, tmp_path)
    assert url == f"https://verify.ehub.test/verify/{ident}"
    path = url.removeprefix("https://verify.ehub.test")

    client = TestClient(create_app(env.settings))
    report = client.get(path).json()
    assert report["verdict"] == "valid", report
    assert report["version"] == 1
    assert report["document"]["intact"] and report["document"]["trusted"]
    assert report["license"]["status"] == "valid"

    # The department revokes the license (吊销) in its own system; the hub picks
    # the change up as a new version and seals it.
    with create_engine(env.source_url).begin() as c:
        number = c.execute(text('SELECT "ZCH" FROM "T_SCJG_YYZZ" ORDER BY "ID" LIMIT 1')).scalar()
        c.execute(
            text('UPDATE "T_SCJG_YYZZ" SET "JLZT" = \'2\', "GXSJ" = \'2030-01-01 00:00:00\' '
                 'WHERE "ZCH" = :n'),
            {"n": number},
        )  # fmt: skip
    ingest_market(env.settings, env.store, env.source_url, monkeypatch)
    seal.run(env.settings, env.store)

    report = client.get(path).json()
    assert report["verdict"] == "revoked", report
    assert report["verdict_zh"] == "已吊销"
    assert report["version"] == 2
    assert report["document"]["intact"], "a revoked license's document is still intact"
    page = client.get(path, headers={"Accept": "text/html"})
    assert page.status_code == 200 and "已吊销" in page.text


def test_tampered_document_and_unknown_identifier(env: Env) -> None:
    ident, pdf = _first_sealed(env.store)
    data = bytearray(pdf.read_bytes())
    at = data.index(b"/Contents") - 40  # inside the signed range, before the signature
    data[at] = ord(" ") if data[at] != ord(" ") else ord("\n")
    pdf.write_bytes(bytes(data))
    client = TestClient(create_app(env.settings))
    report = client.get(f"/verify/{ident}").json()
    assert report["verdict"] == "invalid", report
    assert not report["document"]["intact"]
    assert report["document"]["reasons"]

    missing = client.get("/verify/1.2.156.3005.2.NOPE")
    assert missing.status_code == 404 and missing.json()["verdict"] == "unknown"


def test_verify_server_serves_the_report_over_http(env: Env) -> None:
    import os
    import socket
    import sys
    import time

    import httpx

    ident, _ = _first_sealed(env.store)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc_env = {
        **os.environ,
        "EHUB_HOME": str(env.settings.home),
        "EHUB_DATABASE_URL": env.settings.database_url,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "ehub", "verify-server", "--port", str(port)],
        env=proc_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/verify/{ident}", timeout=5)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "verify-server did not start"
                time.sleep(0.3)
        assert r.status_code == 200 and r.json()["verdict"] == "valid", r.text
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_revocation_at_the_hub_is_a_new_version_sealed_delivered_and_verified(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from ehub.cli import main
    from ehub.store.models import DeliveryRow, FeedMessageRow

    monkeypatch.setenv("EHUB_HOME", str(env.settings.home))
    monkeypatch.setenv("EHUB_DATABASE_URL", env.settings.database_url)
    ident, _ = _first_sealed(env.store)
    runner = CliRunner()
    out = runner.invoke(main, ["license", "revoke", ident, "--reason", "虚假登记", "--actor", "t"])
    assert out.exit_code == 0, out.output
    assert "version 2" in out.output

    again = runner.invoke(main, ["license", "revoke", ident, "--reason", "again"])
    assert again.exit_code == 1 and "already revoked" in again.output
    no_reason = runner.invoke(main, ["license", "cancel", ident, "--reason", " "])
    assert no_reason.exit_code == 1 and "reason" in no_reason.output

    seal.run(env.settings, env.store)
    with env.store.session() as s:
        row = s.scalar(select(LicenseRow).where(LicenseRow.identifier == ident,
                                                LicenseRow.version == 2))  # fmt: skip
        assert row is not None and row.state == "sealed" and row.status == "revoked"
        assert s.scalar(select(DeliveryRow.id).where(DeliveryRow.license_id == row.id))
        assert s.scalar(select(FeedMessageRow.id).where(FeedMessageRow.license_id == row.id))
    report = TestClient(create_app(env.settings)).get(f"/verify/{ident}").json()
    assert report["verdict"] == "revoked" and report["version"] == 2
    assert report["document"]["intact"]

    shown = runner.invoke(main, ["license", "show", ident, "--json"])
    versions = json.loads(shown.output)
    assert [(v["version"], v["status"], v["state"]) for v in versions] == [
        (1, "valid", "sealed"), (2, "revoked", "sealed"),
    ]  # fmt: skip
    assert versions[1]["source_version"] == "hub:t"


def test_ehub_verify_reports_a_revoked_license_intact_but_revoked(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from ehub.cli import main

    monkeypatch.setenv("EHUB_HOME", str(env.settings.home))
    monkeypatch.setenv("EHUB_DATABASE_URL", env.settings.database_url)
    ident, pdf = _first_sealed(env.store)
    runner = CliRunner()
    ok = runner.invoke(main, ["verify", str(pdf), "--json"])
    assert ok.exit_code == 0, ok.output
    assert runner.invoke(main, ["license", "revoke", ident, "--reason", "r"]).exit_code == 0
    # The version-1 document is still intact; the register says the license is revoked.
    bad = runner.invoke(main, ["verify", str(pdf), "--json"])
    assert bad.exit_code == 1, bad.output
    report = json.loads(bad.output)["result"]
    assert report["license_status"] == "revoked", report
    assert report["intact"] and report["trusted"] and not report["valid"]
    assert all(s["integrity"] == "intact" for s in report["signatures"]), report
    seal_only = runner.invoke(main, ["verify", str(pdf), "--no-register"])
    assert seal_only.exit_code == 0, seal_only.output


def test_the_hub_web_app_serves_the_office_portal(env: Env) -> None:
    """The verify server's app carries the offices' portal: the login page answers and a
    records page without a session leads back to it."""
    with TestClient(create_app(env.settings)) as client:
        page = client.get("/portal/login")
        assert page.status_code == 200 and "登录" in page.text
        r = client.get("/portal/offices/3706-yt/records", follow_redirects=False)
        assert r.status_code in (302, 303) and "/portal/login" in r.headers["location"]
