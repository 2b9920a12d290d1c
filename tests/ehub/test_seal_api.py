"""On-demand sealing: an issuing system posts a license and gets the sealed PDF at once;
the record is in the pipeline like a pulled one (versions, quarantine, outbox rows)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from pyhanko.pdf_utils.reader import PdfFileReader
from sqlalchemy import func, select, update

from ehub.api_clients import ApiClientError, create_client, revoke_client
from ehub.config import Settings
from ehub.offices_dev import ensure_dev_offices
from ehub.pipeline import extract, normalize, seal
from ehub.pipeline.intake import reclaim
from ehub.seals import resume_seal, suspend_seal
from ehub.sources.loader import find_spec
from ehub.store.db import Store, utcnow
from ehub.store.models import (
    DeliveryRow,
    FeedMessageRow,
    LicenseRow,
    QuarantineRow,
    RawRecord,
    SealRow,
    SignatureRow,
)
from signing.pki import DEV_DEPARTMENT_USCC
from signing.verify import verify_pdf
from simulators.issuing_system import SOURCE_ID, license_post, post_license

OTHER_USCC = "11370000MB12345705"  # the housing department's (a valid USCC)


@dataclass
class Api:
    settings: Settings
    store: Store
    http: TestClient
    token: str


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    from ehub.verify_api import create_app

    settings = Settings.from_env(
        home=tmp_path / "home",
        out_dir=tmp_path / "out",
        database_url=f"sqlite:///{tmp_path / 'hub.db'}",
        verify_url="https://verify.ehub.test/verify",
    )
    store = Store(settings.database_url)
    store.migrate()
    ensure_dev_offices(store)  # one office per city: every record returned once
    _info, token = create_client(store, "scjg-djxt", DEV_DEPARTMENT_USCC, [SOURCE_ID])
    with TestClient(create_app(settings)) as http:
        yield Api(settings, store, http, token)
    store.dispose()


def _post(api: Api, n: int, **changes: str) -> httpx.Response:
    payload = license_post(n, issuer_uscc=DEV_DEPARTMENT_USCC, seed=5) | changes
    return post_license(api.http, api.token, payload)


def test_a_posted_license_comes_back_sealed_and_enters_the_pipeline(api: Api) -> None:
    r = _post(api, 1)
    assert r.status_code == 201, r.text
    assert r.headers["content-type"] == "application/pdf"
    ident = r.headers["x-ehub-identifier"]
    v = verify_pdf(r.content, [api.settings.home / "pki" / "root.pem"])
    assert v.valid and v.intact and v.trusted, v.reasons
    reader = PdfFileReader(io.BytesIO(r.content))
    assert len(reader.embedded_signatures) == 1
    with api.store.session() as s:
        lic = s.scalars(select(LicenseRow).where(LicenseRow.identifier == ident)).one()
        assert (lic.state, lic.version, lic.source_id) == ("sealed", 1, SOURCE_ID)
        assert s.scalar(select(RawRecord.state).where(RawRecord.id == lic.raw_id)) == "normalized"
        sig = s.scalars(select(SignatureRow).where(SignatureRow.license_id == lic.id,
                                                   SignatureRow.format == "pades")).one()  # fmt: skip
        assert Path(sig.path).read_bytes() == r.content
        assert s.scalar(select(func.count()).select_from(DeliveryRow)
                        .where(DeliveryRow.license_id == lic.id)) == 2  # both platforms  # fmt: skip
        assert s.scalar(select(func.count()).select_from(FeedMessageRow)
                        .where(FeedMessageRow.license_id == lic.id)) == 1  # fmt: skip
    # The seal stage finds nothing left to do for it; fetched again, the same bytes.
    assert seal.run(api.settings, api.store).counts["sealed"] == 0
    again = api.http.get(r.headers["location"], headers={"Authorization": f"Bearer {api.token}"})
    assert again.status_code == 200 and again.content == r.content


def test_posting_the_same_license_again_stores_and_seals_nothing_twice(api: Api) -> None:
    first = _post(api, 2)
    second = _post(api, 2)
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.content == first.content
    changed = _post(api, 2, address="山东省烟台市芝罘区新址路1号")
    assert changed.status_code == 201
    assert changed.headers["x-ehub-version"] == "2"
    with api.store.session() as s:
        assert s.scalar(select(func.count()).select_from(LicenseRow)) == 2
        assert s.scalar(select(func.count()).select_from(RawRecord)) == 2
        assert s.scalar(select(func.count()).select_from(DeliveryRow)
                        .where(DeliveryRow.kind == "license")) == 4  # 2 versions, 2 platforms  # fmt: skip


def test_an_invalid_license_is_refused_with_its_field_and_quarantined(api: Api) -> None:
    r = _post(api, 3, holderCode="91370602MA3C00000X")  # wrong check character
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["source"] == SOURCE_ID and body["quarantined"] is True
    assert body["record"] == license_post(3, issuer_uscc=DEV_DEPARTMENT_USCC, seed=5)["licenseNo"]
    assert [e["field"] for e in body["errors"]] == ["CZZTDM"]
    assert body["errors"][0]["reason"] == "E_USCC_CHECK"
    assert body["errors"][0]["message_zh"]
    with api.store.session() as s:
        q = s.scalars(select(QuarantineRow)).one()
        assert (q.source_id, q.field, q.reason_code) == (SOURCE_ID, "CZZTDM", "E_USCC_CHECK")
        assert s.scalar(select(func.count()).select_from(LicenseRow)) == 0


def test_clients_are_authenticated_and_bound_to_their_department(api: Api) -> None:
    payload = license_post(4, issuer_uscc=DEV_DEPARTMENT_USCC, seed=5)
    assert post_license(api.http, "", payload).status_code == 401
    assert post_license(api.http, "ehub_not-a-token", payload).status_code == 401
    other = license_post(4, issuer_uscc=OTHER_USCC, seed=5)
    r = post_license(api.http, api.token, other)
    assert r.status_code == 403 and OTHER_USCC in r.json()["detail"]
    r = post_license(api.http, api.token, payload, source_id="housing.issuing_api")
    assert r.status_code == 403
    bad = api.http.post(f"/v1/sources/{SOURCE_ID}/licenses", content=b"[1, 2",
                        headers={"Authorization": f"Bearer {api.token}",
                                 "Content-Type": "application/json"})  # fmt: skip
    assert bad.status_code == 400
    revoke_client(api.store, "scjg-djxt")
    assert post_license(api.http, api.token, payload).status_code == 401
    with api.store.session() as s:
        assert s.scalar(select(func.count()).select_from(RawRecord)) == 0  # nothing stored
    with pytest.raises(ApiClientError):
        create_client(api.store, "x", DEV_DEPARTMENT_USCC, ["market_regulation.business_licenses"])


def test_a_license_without_a_usable_seal_is_accepted_and_held(api: Api) -> None:
    assert _post(api, 5).status_code == 201  # registers the dev seals
    with api.store.session() as s:
        code = s.scalar(select(SealRow.code).where(SealRow.department_uscc == DEV_DEPARTMENT_USCC))
    suspend_seal(api.store, code, "key ceremony")
    r = _post(api, 6)
    assert r.status_code == 202, r.text
    assert r.json()["state"] == "held" and r.json()["reason"] == "suspended"
    with api.store.session() as s:
        held = s.scalars(select(LicenseRow).where(LicenseRow.state == "held")).one()
    assert held.identifier == r.json()["identifier"]
    assert _post(api, 6).json()["state"] == "held"  # posted again: where it stands
    resume_seal(api.store, code, "done")
    assert seal.run(api.settings, api.store).counts["sealed"] == 1  # the pipeline seals it
    again = _post(api, 6)
    assert again.status_code == 200 and again.headers["content-type"] == "application/pdf"


def test_a_request_that_died_is_finished_by_the_pipeline(api: Api) -> None:
    """A raw record left ``receiving`` and a license left ``sealing`` (the process was
    killed) are reclaimed by the API source's DAG and sealed by the ordinary stages."""
    assert _post(api, 7).status_code == 201
    spec = find_spec(SOURCE_ID)
    with api.store.session() as s:  # what a kill at each point leaves behind
        s.execute(update(LicenseRow).values(state="sealing", state_reason="api:dead"))
        s.execute(update(RawRecord).values(state="receiving"))
        s.query(SignatureRow).delete()
        s.query(DeliveryRow).delete()
        s.query(FeedMessageRow).delete()
    assert reclaim(api.store, spec) == {"raw_reclaimed": 0, "licenses_reclaimed": 0}  # too young
    long_ago = utcnow() - timedelta(seconds=spec.inbox.reclaim_after_s + 1)
    with api.store.session() as s:
        s.execute(update(LicenseRow).values(state_at=long_ago))
        s.execute(update(RawRecord).values(extracted_at=long_ago))
    got = extract.run(api.settings, api.store, spec)
    assert got.counts["raw_reclaimed"] == 1 and got.counts["licenses_reclaimed"] == 1
    assert normalize.run(api.settings, api.store, spec).counts["normalized"] == 1
    assert seal.run(api.settings, api.store).counts["sealed"] == 1
    with api.store.session() as s:
        assert s.scalar(select(LicenseRow.state)) == "sealed"
        assert s.scalar(select(func.count()).select_from(DeliveryRow)
                        .where(DeliveryRow.kind == "license")) == 2  # fmt: skip


@pytest.mark.parametrize("point", ["received", "claimed", "sealed"])
def test_killing_the_api_server_mid_request_loses_and_duplicates_nothing(
    tmp_path: Path, point: str
) -> None:
    """The API server process is killed (``os._exit``) after storing the post, after
    claiming the new version, and after recording the seal but before answering. The
    issuing system posts again to a restarted server; with the pipeline's reclaim,
    the license ends sealed once, with one delivery and one feed row."""
    import os
    import subprocess
    import sys

    from ehub.devstack import _wait_http, free_port

    home, out = tmp_path / "home", tmp_path / "out"
    db = f"sqlite:///{tmp_path / 'hub.db'}"
    store = Store(db)
    store.migrate()
    ensure_dev_offices(store)  # one office per city: every record returned once
    _info, token = create_client(store, "scjg-djxt", DEV_DEPARTMENT_USCC, [SOURCE_ID])
    payload = license_post(8, issuer_uscc=DEV_DEPARTMENT_USCC, seed=5)

    def server(fault: str) -> tuple[subprocess.Popen[bytes], str]:
        port = free_port()
        env = {**os.environ, "EHUB_HOME": str(home), "EHUB_OUT_DIR": str(out),
               "EHUB_DATABASE_URL": db, "EHUB_FAULT": fault}  # fmt: skip
        proc = subprocess.Popen([sys.executable, "-m", "ehub", "verify-server", "--port",
                                 str(port)], env=env)  # fmt: skip
        _wait_http(f"http://127.0.0.1:{port}/healthz", "api", proc.pid)
        return proc, f"http://127.0.0.1:{port}"

    try:
        proc, base = server(f"api:1:{point}")
        with httpx.Client(base_url=base, timeout=60) as http, pytest.raises(httpx.HTTPError):
            post_license(http, token, payload)
        assert proc.wait(timeout=30) == 137  # killed at the fault point
        proc, base = server("")
        try:
            with httpx.Client(base_url=base, timeout=60) as http:
                again = post_license(http, token, payload)
                if point == "claimed":  # the dead claim: the pipeline finishes it
                    assert again.status_code == 202 and again.json()["state"] == "sealing"
                    spec = find_spec(SOURCE_ID)
                    with store.session() as s:
                        s.execute(update(LicenseRow).values(
                            state_at=utcnow() - timedelta(seconds=spec.inbox.reclaim_after_s + 1)))  # fmt: skip
                    settings = Settings.from_env(home=home, out_dir=out, database_url=db)
                    assert extract.run(settings, store, spec).counts["licenses_reclaimed"] == 1
                    assert seal.run(settings, store).counts["sealed"] == 1
                    again = post_license(http, token, payload)
                    assert again.status_code == 200
                else:
                    assert again.status_code == (201 if point == "received" else 200), again.text
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        assert verify_pdf(again.content, [home / "pki" / "root.pem"]).valid
        with store.session() as s:
            for model in (RawRecord, LicenseRow, FeedMessageRow):
                assert s.scalar(select(func.count()).select_from(model)) == 1, model
            assert s.scalar(select(func.count()).select_from(DeliveryRow)
                            .where(DeliveryRow.kind == "license")) == 2  # fmt: skip
            assert s.scalar(select(LicenseRow.state)) == "sealed"
            path = s.scalar(select(SignatureRow.path).where(SignatureRow.format == "pades"))
        assert Path(str(path)).read_bytes() == again.content
    finally:
        store.dispose()
