"""Delivery to the national platform simulator: seal registrations (their 备案 numbers
recorded on the seals), catalog entries of sealed licenses, case records; and the
same case records to the provincial platform. Reconciliation per kind."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from connectors.platform import NationalClient, ProvincialClient
from ehub.bench_delivery import add_cases, sample_case
from ehub.config import Settings
from ehub.pipeline import deliver, seal
from ehub.pipeline.reconcile import CST, reconcile
from ehub.store.db import Store
from ehub.store.models import CaseRow, DeliveryRow, SealRow
from simulators.market_regulation import generate
from simulators.national import create_app as national_app
from simulators.provincial import create_app as provincial_app
from tests.ehub.pipeline_support import ingest_market


@dataclass
class Env:
    settings: Settings
    store: Store
    national: TestClient
    provincial: TestClient


def _forward(app: TestClient) -> httpx.MockTransport:
    def forward(request: httpx.Request) -> httpx.Response:
        r = app.request(request.method, request.url.path, params=request.url.params,
                        content=request.content, headers=dict(request.headers))  # fmt: skip
        return httpx.Response(r.status_code, content=r.content, headers=r.headers)

    return httpx.MockTransport(forward)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    mr = f"sqlite:///{tmp_path / 'mr.db'}"
    generate(mr, count=12, defect_rate=0.0, seed=5)
    settings = Settings.from_env(
        home=tmp_path / "home", out_dir=tmp_path / "out",
        database_url=f"sqlite:///{tmp_path / 'hub.db'}", market_regulation_url=mr, batch_size=5,
    )  # fmt: skip
    store = Store(settings.database_url)
    store.migrate()
    ingest_market(settings, store, mr, monkeypatch)
    seal.run(settings, store)
    add_cases(store, 3)  # three case record versions, as the normalize stage stores them
    with (
        TestClient(national_app(tmp_path / "national", token="n-token")) as national,
        TestClient(provincial_app(tmp_path / "provincial", token="p-token")) as provincial,
    ):
        yield Env(settings, store, national, provincial)
    store.dispose()


def _national(env: Env) -> NationalClient:
    return NationalClient("http://national.test", "n-token", transport=_forward(env.national))


def _provincial(env: Env) -> ProvincialClient:
    return ProvincialClient("http://prov.test", "p-token", transport=_forward(env.provincial))


def _states(store: Store, destination: str) -> dict[tuple[str, str], int]:
    with store.session() as s:
        rows = s.execute(
            select(DeliveryRow.kind, DeliveryRow.state, func.count())
            .where(DeliveryRow.destination == destination)
            .group_by(DeliveryRow.kind, DeliveryRow.state)
        ).all()
    return {(k, st): n for k, st, n in rows}


def test_seals_catalog_entries_and_cases_reach_the_national_platform(env: Env) -> None:
    result = deliver.run(env.settings, env.store, destination="national",
                         client=_national(env), base_delay=0.01)  # fmt: skip
    with env.store.session() as s:
        seals = len(s.scalars(select(SealRow.id)).all())
    assert result.counts["delivered_seal"] == seals >= 1
    assert result.counts["delivered_license"] == 12
    assert result.counts["delivered_case"] == 3
    assert _states(env.store, "national") == {
        ("seal", "delivered"): seals, ("license", "delivered"): 12, ("case", "delivered"): 3,
    }  # fmt: skip
    # the registration numbers the platform gave are on the seals (备案号)
    with env.store.session() as s:
        numbers = s.scalars(select(SealRow.registration_no)).all()
    assert all(n and n.startswith("BA-") for n in numbers)
    # a second run sends nothing; the platform holds each record once
    again = deliver.run(env.settings, env.store, destination="national", client=_national(env))
    assert again.batches == 0

    # provincial: the licenses with their PDFs and the same case records
    prov = deliver.run(env.settings, env.store, client=_provincial(env), base_delay=0.01)
    assert (prov.counts["delivered_license"], prov.counts["delivered_case"]) == (12, 3)

    # reconciliation per kind: the platform loses a case record, the hub re-delivers it
    today = datetime.now(CST).date()
    client = _national(env)
    for kind, n in (("seal", seals), ("license", 12), ("case", 3)):
        r = reconcile(env.store, client, today, destination="national", kind=kind)
        assert r.matched and r.hub_count == n, (kind, r)
    number = str(sample_case(1)["BJBH"])
    assert env.national.delete(f"/admin/cases/{number}/1").status_code == 204
    lost = reconcile(env.store, client, today, destination="national", kind="case")
    assert lost.missing == [(number, 1)] and lost.redelivered == 1
    again = deliver.run(env.settings, env.store, destination="national", client=client)
    assert again.counts["delivered_case"] == 1
    assert reconcile(env.store, client, today, destination="national", kind="case").matched


def test_a_case_record_the_platform_refuses_is_rejected_with_its_reason(env: Env) -> None:
    with env.store.session() as s:
        row = s.scalars(select(CaseRow).limit(1)).one()
        row.document = {**row.document, "BJSJ": "2026-11-19T09:00:00+08:00"}  # before SLSJ
    result = deliver.run(env.settings, env.store, destination="national",
                         client=_national(env), kinds=["case"])  # fmt: skip
    assert (result.counts["delivered"], result.counts["rejected"]) == (2, 1)
    with env.store.session() as s:
        [err] = s.scalars(
            select(DeliveryRow.last_error).where(DeliveryRow.state == "rejected")
        ).all()
    assert err and err.startswith("BUSINESS_RULE")


def test_the_continuous_worker_delivers_rows_as_they_are_committed(env: Env) -> None:
    import threading
    import time

    from ehub.pipeline.delivery_worker import serve

    clients = {"provincial": _provincial(env), "national": _national(env)}
    stop = threading.Event()
    out: list[object] = []
    worker = threading.Thread(
        target=lambda: out.append(
            serve(env.settings, env.store, clients=clients, poll=0.05, stop=stop)
        ),
        daemon=True,
    )
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while (
            time.monotonic() < deadline
            and _states(env.store, "national").get(("case", "delivered")) != 3
        ):
            time.sleep(0.1)
        add_cases(env.store, 2, start=100)  # committed while the worker runs
        while (
            time.monotonic() < deadline
            and _states(env.store, "provincial").get(("case", "delivered")) != 5
        ):
            time.sleep(0.05)
    finally:
        stop.set()
        worker.join(timeout=30)
    assert not worker.is_alive()
    for dest in ("provincial", "national"):
        assert _states(env.store, dest).get(("case", "delivered")) == 5, dest
    assert _states(env.store, "provincial")[("license", "delivered")] == 12
    stats = out[0]
    assert stats.delivered["provincial"] == 17  # type: ignore[attr-defined]
