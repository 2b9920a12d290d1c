"""The seal stage with the seal registry: licenses held while their seal is unusable,
sealed on a later run; and the registry's migration over an existing store."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyhanko.pdf_utils.reader import PdfFileReader
from sqlalchemy import func, inspect, select, text

from ehub import seals
from ehub.pipeline import seal
from ehub.store.db import Store, utcnow
from ehub.store.models import AuditEvent, DeliveryRow, LicenseRow, SealRow, SignatureRow
from signing.pki import DEV_DEPARTMENT_USCC
from tests.ehub.pipeline_support import MarketEnv, market_env

COUNT = 8


Env = MarketEnv


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    e = market_env(tmp_path, monkeypatch, count=COUNT, seed=5, batch_size=3)
    yield e
    e.store.dispose()


def _licenses(store: Store) -> list[tuple[str, str | None]]:
    with store.session() as s:
        return [
            (state, reason)
            for state, reason in s.execute(
                select(LicenseRow.state, LicenseRow.state_reason).order_by(LicenseRow.id)
            )
        ]


def _count(store: Store, model: type, *where: object) -> int:
    with store.session() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)  # type: ignore[arg-type]


def _signer(path: str) -> str:
    with open(path, "rb") as fh:
        reader = PdfFileReader(io.BytesIO(fh.read()))
        return str(reader.embedded_signatures[0].signer_cert.subject.human_friendly)


def test_dev_seals_cover_every_demo_department(env: Env) -> None:
    seal.ensure_dev_seal(env.settings, env.store)
    seal.ensure_dev_seal(env.settings, env.store)  # registered once
    found = {x.code: x for x in seals.list_seals(env.store)}
    assert set(found) == {d.code for d in seal.DEV_SEALS}
    covered = sorted(t for x in found.values() for t in x.license_types)
    assert covered == [f"11100000000013338W00{i}" for i in range(1, 7)]
    assert all(x.cross_level and x.division == "370000" for x in found.values())
    market = found[seal.DEV_SEAL_CODE]
    assert market.department_uscc == DEV_DEPARTMENT_USCC and market.name == seal.DEV_SEAL_NAME


def test_suspended_seal_holds_licenses_until_resumed(env: Env) -> None:
    seal.ensure_dev_seal(env.settings, env.store)
    seals.suspend_seal(env.store, seal.DEV_SEAL_CODE, "印章年检 annual check")

    first = seal.run(env.settings, env.store)
    assert first.counts == {"sealed": 0, "held": COUNT}
    states = _licenses(env.store)
    assert {st for st, _ in states} == {"held"}
    assert all(
        r and r.startswith("suspended: ") and f"{seal.DEV_SEAL_CODE} suspended (印章年检" in r
        for _, r in states
    )
    assert (
        _count(env.store, SignatureRow) == 0
        and _count(env.store, DeliveryRow, DeliveryRow.kind == "license") == 0
    )
    assert _count(env.store, AuditEvent, AuditEvent.event == "held") == COUNT

    again = seal.run(env.settings, env.store)  # still suspended: no new events
    assert again.counts == {"sealed": 0, "held": COUNT}
    assert _count(env.store, AuditEvent, AuditEvent.event == "held") == COUNT

    seals.resume_seal(env.store, seal.DEV_SEAL_CODE, "checked")
    done = seal.run(env.settings, env.store)
    assert done.counts == {"sealed": COUNT, "held": 0}
    assert _licenses(env.store) == [("sealed", None)] * COUNT
    dev_id = seals.get_seal(env.store, seal.DEV_SEAL_CODE).id
    with env.store.session() as s:
        sigs = list(
            s.execute(
                select(SignatureRow.seal_id, SignatureRow.path).where(
                    SignatureRow.format == "pades"
                )
            )
        )
        details = list(s.scalars(select(AuditEvent.detail).where(AuditEvent.event == "sealed")))
    assert {sid for sid, _ in sigs} == {dev_id} and len(sigs) == COUNT
    assert {d["seal"] for d in details} == {seal.DEV_SEAL_CODE}
    assert f"Common Name: {seal.DEV_SEAL_NAME}" in _signer(sigs[0][1])
    assert _count(env.store, DeliveryRow, DeliveryRow.destination == "provincial") == COUNT
    assert seal.run(env.settings, env.store).counts == {"sealed": 0, "held": 0}


def test_revoked_seal_holds_until_a_replacement_is_registered(env: Env) -> None:
    seal.ensure_dev_seal(env.settings, env.store)
    seals.revoke_seal(env.store, seal.DEV_SEAL_CODE, "department reorganised")
    assert seal.run(env.settings, env.store).counts["held"] == COUNT
    assert all(r and r.startswith("revoked: ") for _, r in _licenses(env.store))
    seal.ensure_dev_seal(env.settings, env.store)  # a revoked dev seal stays revoked
    assert seal.run(env.settings, env.store).counts == {"sealed": 0, "held": COUNT}

    county = seals.create_seal(
        env.store,
        env.settings,
        department="山东省市场监督管理局",
        department_uscc=DEV_DEPARTMENT_USCC,
        name="山东省市场监督管理局电子证照专用章（2026）",
        code="370000-SCJG-DZZZ-0002",
        license_types=("11100000000013338W001",),
        cross_level=True,
    )
    assert seal.run(env.settings, env.store).counts == {"sealed": COUNT, "held": 0}
    with env.store.session() as s:
        assert set(s.scalars(select(SignatureRow.seal_id))) == {county.id}


def test_a_seal_whose_key_cannot_be_opened_holds_its_licenses(env: Env) -> None:
    seal.ensure_dev_seal(env.settings, env.store)
    with env.store.session() as s:
        row = s.scalar(select(SealRow).where(SealRow.code == seal.DEV_SEAL_CODE))
        assert row is not None
        row.key_ref = "pkcs11:token=missing;object=seal"
    assert seal.run(env.settings, env.store).counts == {"sealed": 0, "held": COUNT}
    assert all(r and r.startswith("key_unavailable: ") for _, r in _licenses(env.store))


def test_migration_0003_over_a_store_with_the_old_dev_seal(store_url: str) -> None:
    from alembic import command
    from alembic.config import Config

    from ehub.store.db import MIGRATIONS

    store = Store(store_url)
    try:
        store.migrate("0002")
        with store.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO seals (code, department, department_uscc, name, seal_type,"
                    " cert_pem, key_ref, status, valid_from, valid_until, created_at) VALUES"
                    " ('OLD', '山东省市场监督管理局', :uscc, '旧章', '证照专用章', 'pem',"
                    " '/old/seal.p12', 'active', :at, :at, :at)"
                ),
                {"uscc": DEV_DEPARTMENT_USCC, "at": utcnow()},
            )
        store.migrate()
        old = seals.get_seal(store, "OLD")
        assert old.division == "370000" and old.license_types == () and not old.cross_level
        assert old.status_reason is None and old.image_path is None and old.registered_at is None
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["engine"] = store.engine
        command.downgrade(cfg, "0002")
        with store.engine.connect() as conn:
            assert conn.execute(text("SELECT code FROM seals")).scalar() == "OLD"
            assert "division" not in {c["name"] for c in inspect(conn).get_columns("seals")}
        store.migrate()
        assert seals.get_seal(store, "OLD").division == "370000"
    finally:
        store.dispose()
