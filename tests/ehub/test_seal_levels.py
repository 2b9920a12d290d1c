"""The seal stage at the level a license type's template chooses (B-T with the dev TSA
served on loopback), holding licenses while the TSA is down; and sealing with a key
that lives in a SoftHSM2 token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from ehub import seals
from ehub.pipeline import seal
from ehub.store.db import Store
from ehub.store.models import LicenseRow, SignatureRow
from ehub.templates import LicenseTemplate, template_for
from signing.pki_services import serve_pki
from signing.softhsm import ensure_softhsm_token
from signing.verify import verify_pdf
from tests.ehub.pipeline_support import MarketEnv, market_env

COUNT = 4


Env = MarketEnv


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    e = market_env(tmp_path, monkeypatch, count=COUNT, seed=8)
    yield e
    e.store.dispose()


def _at_bt(monkeypatch: pytest.MonkeyPatch) -> None:
    def bt(type_code: str, type_name: str = "") -> LicenseTemplate:
        tpl = template_for(type_code, type_name)
        return LicenseTemplate(
            tpl.type_code, tpl.title, tpl.holder_label, tpl.holder_code_label, tpl.fields, "B-T"
        )

    monkeypatch.setattr(seal, "template_for", bt)


def _states(store: Store) -> list[tuple[str, str | None]]:
    with store.session() as s:
        return list(s.execute(select(LicenseRow.state, LicenseRow.state_reason)).tuples())


def test_template_level_b_t_timestamps_every_seal(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    _at_bt(monkeypatch)
    _id, pki = seal.ensure_dev_seal(env.settings, env.store)
    with serve_pki(pki) as server:
        result = seal.run(env.settings, env.store)
        assert result.counts == {"sealed": COUNT, "held": 0}
        assert server.tsa_requests >= COUNT
    with env.store.session() as s:
        rows = list(
            s.execute(
                select(SignatureRow.level, SignatureRow.path).where(SignatureRow.format == "pades")
            ).tuples()
        )
    assert [lvl for lvl, _ in rows] == ["B-T"] * COUNT
    report = verify_pdf(Path(rows[0][1]).read_bytes(), [pki.root_cert_path])
    assert report.valid, report.reasons
    assert report.signatures[0].timestamp.present and report.signatures[0].timestamp.valid


def test_tsa_down_holds_the_licenses_then_they_are_sealed(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    _at_bt(monkeypatch)
    monkeypatch.setattr(seal, "SEAL_RETRY_PAUSE", (0.0,))
    _id, pki = seal.ensure_dev_seal(env.settings, env.store)
    result = seal.run(env.settings, env.store)  # nothing serves the TSA URL
    assert result.counts == {"sealed": 0, "held": COUNT}
    states = _states(env.store)
    assert all(st == "held" for st, _ in states)
    assert all(why and why.startswith("service_unavailable:") and pki.tsa_url in why
               for _, why in states), states  # fmt: skip
    with env.store.session() as s:
        assert s.scalar(select(SignatureRow.id)) is None, "nothing is recorded as sealed"
    with serve_pki(pki):
        assert seal.run(env.settings, env.store).counts == {"sealed": COUNT, "held": 0}
    assert all(st == "sealed" and why is None for st, why in _states(env.store))


def test_a_seal_whose_key_is_in_softhsm2_seals_its_department_licenses(env: Env) -> None:
    _id, pki = seal.ensure_dev_seal(env.settings, env.store)
    with env.store.session() as s:
        issuer = s.scalar(select(LicenseRow.issuer_code).order_by(LicenseRow.id).limit(1))
    assert issuer is not None
    token = ensure_softhsm_token(env.settings.home / "hsm", pki, uscc=issuer,
                                 organization="某市市场监督管理局")  # fmt: skip
    hsm_seal = seals.create_seal(
        env.store,
        env.settings,
        department="某市市场监督管理局",
        department_uscc=issuer,
        name="某市市场监督管理局电子证照专用章（HSM）",
        license_types=["11100000000013338W001"],
        cert_pem=token.certificate_path.read_text(),
        chain_pem=token.chain_path.read_text(),
        key_ref=token.key_ref().uri(),
    )
    assert seal.run(env.settings, env.store).counts["held"] == 0
    with env.store.session() as s:
        rows = list(
            s.execute(
                select(SignatureRow.seal_id, SignatureRow.path)
                .join(LicenseRow, LicenseRow.id == SignatureRow.license_id)
                .where(LicenseRow.issuer_code == issuer, SignatureRow.format == "pades")
            ).tuples()
        )
    assert rows and all(seal_id == hsm_seal.id for seal_id, _ in rows)
    report = verify_pdf(Path(rows[0][1]).read_bytes(), [pki.root_cert_path])
    assert report.valid, report.reasons
    serial = format(token.certificate().serial_number, "X")
    assert report.signatures[0].cert_serial == serial
    # The license XML is signed through the same token session (the key never leaves it).
    from signing.xmlsig import verify_license_xml
    from tests.signing.verify_support import xmlsec_verify

    with env.store.session() as s:
        xml_paths = list(
            s.scalars(
                select(SignatureRow.path)
                .join(LicenseRow, LicenseRow.id == SignatureRow.license_id)
                .where(LicenseRow.issuer_code == issuer, SignatureRow.format == "xmldsig",
                       SignatureRow.seal_id == hsm_seal.id)
            )
        )  # fmt: skip
    assert len(xml_paths) == len(rows)
    xml = verify_license_xml(Path(xml_paths[0]).read_bytes(), [pki.root_cert_path])
    assert xml.valid, xml.reasons
    assert xml.cert_serial.upper().lstrip("0") == serial.lstrip("0")
    checked = xmlsec_verify(Path(xml_paths[0]), pki.root_cert_path, pki.intermediate_cert_path)
    assert checked.returncode == 0, checked.stderr


def test_every_sealed_license_also_gets_its_xml_signed(env: Env, tmp_path: Path) -> None:
    from signing.xmlsig import verify_license_xml
    from tests.signing.verify_support import xmlsec_verify

    _id, pki = seal.ensure_dev_seal(env.settings, env.store)
    assert seal.run(env.settings, env.store).counts == {"sealed": COUNT, "held": 0}
    with env.store.session() as s:
        rows = list(
            s.execute(
                select(LicenseRow.identifier, SignatureRow.path)
                .join(LicenseRow, LicenseRow.id == SignatureRow.license_id)
                .where(SignatureRow.format == "xmldsig")
            ).tuples()
        )
    assert len(rows) == COUNT
    ident, path = rows[0]
    result = verify_license_xml(Path(path).read_bytes(), [pki.root_cert_path])
    assert result.valid and result.license_identifier == ident, result.reasons
    checked = xmlsec_verify(Path(path), pki.root_cert_path, pki.intermediate_cert_path)
    assert checked.returncode == 0, checked.stderr


def test_a_license_that_cannot_be_rendered_is_held_and_the_others_sealed(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    from signing.errors import UnsealableDocument
    from signing.fastpades import render_and_seal

    with env.store.session() as s:
        victim = s.scalar(select(LicenseRow.identifier).order_by(LicenseRow.id).limit(1))

    def render(view: object, **kwargs: Any) -> bytes:
        if getattr(view, "identifier", None) == victim:
            raise UnsealableDocument(f"license {victim}: 40 rows need 900 pt, only 400 pt fit")
        return render_and_seal(view, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(seal, "render_and_seal", render)
    assert seal.run(env.settings, env.store).counts == {"sealed": COUNT - 1, "held": 1}
    with env.store.session() as s:
        state, why = s.execute(
            select(LicenseRow.state, LicenseRow.state_reason).where(LicenseRow.identifier == victim)
        ).one()
    assert state == "held" and why.startswith("unsealable: ") and "900 pt" in why
