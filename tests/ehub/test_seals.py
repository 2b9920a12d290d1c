"""The seal registry: registering, status rules, selection, registration export, the CLI."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID
from PIL import Image
from sqlalchemy import select

from ehub import seals
from ehub.audit import verify_chain
from ehub.cli import main
from ehub.config import Settings
from ehub.seals import (
    InvalidSealTransition,
    NoUsableSeal,
    SealNotFound,
    SealRegistry,
    SealRegistryError,
)
from ehub.store.db import Store
from ehub.store.models import AuditEvent
from simulators.defect_kit import agency_uscc

BUSINESS = "11100000000013338W001"
FOOD = "11100000000013338W002"
PROVINCE = agency_uscc("370000", salt=9)  # a provincial bureau
CITY = agency_uscc("370100", salt=9)  # Jinan
COUNTY = agency_uscc("370102", salt=9)  # a county bureau in Jinan
OTHER_COUNTY = agency_uscc("370202", salt=9)  # Qingdao


@dataclass
class Env:
    settings: Settings
    store: Store


@pytest.fixture
def env(tmp_path: Path, store_url: str) -> Iterator[Env]:
    """Every test on SQLite and on PostgreSQL."""
    settings = Settings.from_env(
        home=tmp_path / "home", out_dir=tmp_path / "out", database_url=store_url
    )
    store = Store(settings.database_url)
    store.migrate()
    yield Env(settings, store)
    store.dispose()


def _create(env: Env, **kw: object) -> seals.Seal:
    args: dict[str, object] = {
        "department": "济南市历下区市场监督管理局",
        "department_uscc": COUNTY,
        "name": "济南市历下区市场监督管理局电子证照专用章",
        "license_types": (BUSINESS,),
    }
    args.update(kw)
    return seals.create_seal(env.store, env.settings, **args)  # type: ignore[arg-type]


def test_create_issues_a_dev_certificate_and_draws_the_seal(env: Env) -> None:
    seal = _create(env)
    assert seal.status == "active" and seal.division == "370102"
    assert seal.license_types == (BUSINESS,) and not seal.cross_level
    assert seal.code == f"370102-{COUNTY[8:17]}-01"
    cert = seal.certificate()
    org = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert (org, cn) == (seal.department, seal.name)
    assert (seal.valid_from, seal.valid_until) == (
        cert.not_valid_before_utc,
        cert.not_valid_after_utc,
    )
    chain = x509.load_pem_x509_certificates(seal.chain_pem.encode())  # type: ignore[union-attr]
    assert [c.subject for c in chain] == [cert.issuer, chain[1].issuer]
    assert Path(seal.key_ref).is_file() and seal.key_ref.endswith(".p12")
    png = Path(seal.image_path).read_bytes()  # type: ignore[arg-type]
    assert hashlib.sha256(png).hexdigest() == seal.image_sha256
    with Image.open(Path(seal.image_path)) as img:  # type: ignore[arg-type]
        assert img.format == "PNG" and img.size == (400, 400)
        red = img.convert("RGBA").getpixel((200, 200))  # the star's centre
        assert red[0] > 200 and red[1] < 40 and red[3] == 255  # type: ignore[index]
    assert [x.code for x in seals.list_seals(env.store)] == [seal.code]
    assert seals.get_seal(env.store, seal.code) == seal
    with env.store.session() as s:
        events = list(s.scalars(select(AuditEvent.event).where(AuditEvent.subject == seal.code)))
        assert events == ["seal_registered"]


def test_create_rejects_bad_input(env: Env, tmp_path: Path) -> None:
    with pytest.raises(SealRegistryError, match="USCC"):
        _create(env, department_uscc=COUNTY[:-1] + ("0" if COUNTY[-1] != "0" else "1"))
    with pytest.raises(SealRegistryError, match="license type"):
        _create(env, license_types=("W001",))
    with pytest.raises(SealRegistryError, match="division"):
        _create(env, division="37")
    first = _create(env, code="SEAL-1")
    with pytest.raises(SealRegistryError, match="already registered") as dup:
        _create(env, code="SEAL-1", name="another name")
    assert dup.value.reason == "exists"
    with pytest.raises(SealRegistryError, match="key_ref"):
        _create(env, code="SEAL-2", cert_pem=first.cert_pem)
    with pytest.raises(SealRegistryError, match="already uses this certificate"):
        _create(env, code="SEAL-2", cert_pem=first.cert_pem, key_ref="/x.p12")
    ca = Path(env.settings.home / "pki" / "intermediate.pem").read_text()
    with pytest.raises(SealRegistryError, match="CA certificate"):
        _create(env, code="SEAL-3", cert_pem=ca, key_ref="/x.p12")
    with pytest.raises(SealNotFound):
        seals.get_seal(env.store, "nope")


def test_imported_certificate_and_narrowed_window(env: Env) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding, pkcs12

    from signing.pki import ensure_dev_pki, issue_seal_certificate

    dev = _create(env, code="DEV")
    pki = ensure_dev_pki(env.settings.home / "pki")
    p12 = issue_seal_certificate(pki, "济南市历下区市场监督管理局", COUNTY, "外部CA签发的章")
    _key, cert, _chain = pkcs12.load_key_and_certificates(p12.read_bytes(), pki.passphrase.encode())
    assert cert is not None
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
    end = start + timedelta(days=30)
    imported = seals.create_seal(
        env.store,
        env.settings,
        department="济南市历下区市场监督管理局",
        department_uscc=COUNTY,
        name="外部CA签发的章",
        code="IMPORTED",
        cert_pem=cert.public_bytes(Encoding.PEM).decode(),
        key_ref="pkcs11:token=ehub;object=seal",
        image=b"\x89PNG fake",
        valid_from=start,
        valid_until=end,
    )
    assert imported.key_ref.startswith("pkcs11:") and imported.chain_pem is None
    assert (imported.valid_from, imported.valid_until) == (start, end)
    assert seals.get_seal(env.store, "IMPORTED").valid_from == start
    assert imported.image_sha256 == hashlib.sha256(b"\x89PNG fake").hexdigest()
    assert imported.license_types == () and dev.license_types == (BUSINESS,)
    with pytest.raises(SealRegistryError, match="window is empty"):
        _create(
            env,
            code="X",
            cert_pem=dev.cert_pem,
            key_ref="/k.p12",
            valid_until=start - timedelta(days=9999),
        )


def test_status_transitions(env: Env) -> None:
    code = _create(env).code
    s1 = seals.suspend_seal(env.store, code, "密钥疑似泄露 key suspected compromised")
    assert s1.status == "suspended" and s1.suspended_at is not None
    assert s1.status_reason == "密钥疑似泄露 key suspected compromised"
    with pytest.raises(InvalidSealTransition, match="it is suspended"):
        seals.suspend_seal(env.store, code, "again")
    s2 = seals.resume_seal(env.store, code, "key checked")
    assert s2.status == "active" and s2.suspended_at is None
    with pytest.raises(InvalidSealTransition, match="it is active"):
        seals.resume_seal(env.store, code)
    with pytest.raises(SealRegistryError, match="needs a reason"):
        seals.revoke_seal(env.store, code, "  ")
    seals.suspend_seal(env.store, code, "pause")
    s3 = seals.revoke_seal(env.store, code, "department merged")
    assert s3.status == "revoked" and s3.revoked_at is not None
    for action in (seals.resume_seal, seals.suspend_seal, seals.revoke_seal):
        with pytest.raises(InvalidSealTransition, match="revocation is final") as err:
            action(env.store, code, "try")
        assert err.value.reason == "invalid_transition"
    with pytest.raises(SealNotFound):
        seals.suspend_seal(env.store, "missing", "x")
    with env.store.session() as s:
        events = list(
            s.scalars(
                select(AuditEvent.event).where(AuditEvent.subject == code).order_by(AuditEvent.id)
            )
        )
        assert events == [
            "seal_registered",
            "seal_suspended",
            "seal_active",
            "seal_suspended",
            "seal_revoked",
        ]
        assert verify_chain(s) == []


def test_revoked_dev_seal_key_is_retired_and_a_new_seal_gets_a_new_key(env: Env) -> None:
    old = _create(env, code="OLD")
    revoked = seals.revoke_seal(env.store, "OLD", "replaced")
    assert not Path(old.key_ref).exists() and Path(revoked.key_ref).is_file()
    assert "/retired/" in revoked.key_ref
    assert seals.get_seal(env.store, "OLD").key_ref == revoked.key_ref
    new = _create(env, code="NEW")  # same department and seal name
    assert new.cert_pem != old.cert_pem and Path(new.key_ref).is_file()
    assert seals.select_seal(env.store, COUNTY, BUSINESS, datetime.now(UTC)).code == "NEW"


def _reason(env: Env, uscc: str, type_code: str, at: datetime | None = None) -> str:
    with pytest.raises(NoUsableSeal) as err:
        seals.select_seal(env.store, uscc, type_code, at or datetime.now(UTC))
    return err.value.reason


def test_select_seal_gives_the_precise_reason(env: Env) -> None:
    now = datetime.now(UTC)
    assert _reason(env, COUNTY, BUSINESS) == "no_seal"
    seal = _create(env, code="OWN")
    assert _reason(env, COUNTY, FOOD) == "no_seal_for_type"
    assert seals.select_seal(env.store, COUNTY, BUSINESS, now).code == "OWN"
    assert _reason(env, COUNTY, BUSINESS, seal.valid_from - timedelta(seconds=1)) == (
        "not_yet_valid"
    )
    assert _reason(env, COUNTY, BUSINESS, seal.valid_until) == "expired"
    seals.suspend_seal(env.store, "OWN", "audit")
    assert _reason(env, COUNTY, BUSINESS) == "suspended"
    seals.revoke_seal(env.store, "OWN", "gone")
    with pytest.raises(NoUsableSeal, match="OWN revoked") as err:
        seals.select_seal(env.store, COUNTY, BUSINESS, now)
    assert err.value.reason == "revoked"
    _create(env, code="OWN-2", name="第二枚章")
    assert seals.select_seal(env.store, COUNTY, BUSINESS, now).code == "OWN-2"


def test_select_seal_any_type_and_latest_window(env: Env) -> None:
    now = datetime.now(UTC)
    _create(env, code="ANY", license_types=())
    assert seals.select_seal(env.store, COUNTY, FOOD, now).code == "ANY"
    _create(env, code="LATER", name="新章", license_types=(), valid_from=now + timedelta(days=1))
    assert seals.select_seal(env.store, COUNTY, FOOD, now).code == "ANY"
    assert seals.select_seal(env.store, COUNTY, FOOD, now + timedelta(days=2)).code == "LATER"


def test_cross_level_seals_cover_their_division(env: Env) -> None:
    now = datetime.now(UTC)
    _create(
        env,
        code="PROV",
        department="山东省市场监督管理局",
        department_uscc=PROVINCE,
        name="山东省市场监督管理局电子证照专用章",
        cross_level=True,
    )
    registry = SealRegistry.load(env.store)
    assert registry.select(COUNTY, BUSINESS, now).code == "PROV"
    assert registry.select(OTHER_COUNTY, BUSINESS, now).code == "PROV"
    with pytest.raises(NoUsableSeal) as err:
        registry.select(COUNTY, FOOD, now)
    assert err.value.reason == "no_seal"
    with pytest.raises(NoUsableSeal):  # outside Shandong
        registry.select(agency_uscc("110101", salt=9), BUSINESS, now)
    _create(
        env,
        code="CITY",
        department="济南市市场监督管理局",
        department_uscc=CITY,
        name="济南市市场监督管理局电子证照专用章",
        cross_level=True,
    )
    registry = SealRegistry.load(env.store)
    assert registry.select(COUNTY, BUSINESS, now).code == "CITY"  # more specific division
    assert registry.select(OTHER_COUNTY, BUSINESS, now).code == "PROV"
    _create(env, code="OWN")
    assert seals.select_seal(env.store, COUNTY, BUSINESS, now).code == "OWN"
    # The department's own seal decides: suspended means held, not the city's seal.
    seals.suspend_seal(env.store, "OWN", "audit")
    assert _reason(env, COUNTY, BUSINESS) == "suspended"
    seals.suspend_seal(env.store, "CITY", "audit")
    # The same for the most specific cross-level seal: other Jinan bureaus are held.
    assert _reason(env, agency_uscc("370103", salt=9), BUSINESS) == "suspended"
    assert seals.select_seal(env.store, OTHER_COUNTY, BUSINESS, now).code == "PROV"
    assert _reason(env, agency_uscc("370104", salt=9), FOOD) == "no_seal"


def test_registration_export_fields(env: Env) -> None:
    seal = seals.record_registration(env.store, _create(env).code, "BA-3701-0001")
    doc = seals.export_registration(seal)
    json.dumps(doc, ensure_ascii=False)  # ready to send as JSON
    cert = seal.certificate()
    assert doc["seal"] == {
        "esID": seal.code,
        "name": "济南市历下区市场监督管理局电子证照专用章",
        "type": 1,
        "type_name": "单位印章",
        "seal_type": "电子证照专用章",
        "license_types": [BUSINESS],
        "cross_level": False,
        "createDate": seal.created_at.isoformat(),
        "validStart": seal.valid_from.isoformat(),
        "validEnd": seal.valid_until.isoformat(),
        "status": "active",
        "status_reason": None,
    }
    assert doc["department"] == {
        "name": "济南市历下区市场监督管理局",
        "uscc": COUNTY,
        "division": "370102",
    }
    c = doc["certificate"]
    assert c["serial"] == format(cert.serial_number, "X")
    assert c["sha256"] == cert.fingerprint(hashes.SHA256()).hex()
    assert c["issuer"] == cert.issuer.rfc4514_string() and "Seal Issuing CA" in c["issuer"]
    assert c["not_after"] == cert.not_valid_after_utc.isoformat()
    assert c["certListType"] == 1 and c["pem"].startswith("-----BEGIN CERTIFICATE-----")
    pic = doc["picture"]
    assert pic["type"] == "PNG" and pic["sha256"] == seal.image_sha256
    import base64

    assert hashlib.sha256(base64.b64decode(pic["data_base64"])).hexdigest() == seal.image_sha256
    assert doc["registration"]["registration_no"] == "BA-3701-0001"
    assert "data_base64" not in seals.export_registration(seal, with_image=False)["picture"]
    revoked = seals.revoke_seal(env.store, seal.code, "merged")
    assert seals.export_registration(revoked)["seal"]["status"] == "revoked"
    assert seals.export_registration(revoked)["seal"]["status_reason"] == "merged"


def test_cli_seal_commands(env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EHUB_HOME", str(env.settings.home))
    monkeypatch.setenv("EHUB_DATABASE_URL", env.settings.database_url)
    runner = CliRunner()

    def ok(*args: str) -> str:
        result = runner.invoke(main, ["seal", *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    created = json.loads(
        ok(
            "create",
            "--department",
            "济南市历下区市场监督管理局",
            "--uscc",
            COUNTY,
            "--name",
            "济南市历下区市场监督管理局电子证照专用章",
            "--license-type",
            BUSINESS,
            "--code",
            "CLI-1",
            "--json",
        )
    )
    assert created["code"] == "CLI-1" and created["license_types"] == [BUSINESS]
    listing = ok("list")
    assert "CLI-1" in listing and "启用" in listing and "济南市" in listing  # the table folds
    assert [x["code"] for x in json.loads(ok("list", "--json"))] == ["CLI-1"]
    shown = json.loads(ok("show", "CLI-1", "--json"))
    assert shown["certificate"]["sha256"] and shown["division"] == "370102"
    assert "电子证照专用章" in ok("show", "CLI-1")
    assert "暂停" in ok("suspend", "CLI-1", "--reason", "年检")
    assert json.loads(ok("list", "--status", "suspended", "--json"))[0]["status_reason"] == "年检"
    assert "启用" in ok("resume", "CLI-1")
    out = tmp_path / "reg" / "CLI-1.json"
    ok("export-registration", "CLI-1", "--out", str(out))
    assert json.loads(out.read_text(encoding="utf-8"))["seal"]["esID"] == "CLI-1"
    assert json.loads(ok("export-registration", "CLI-1", "--no-image"))["department"]["uscc"] == (
        COUNTY
    )
    assert "BA-1" in ok("record-registration", "CLI-1", "BA-1")
    assert "注销" in ok("revoke", "CLI-1", "--reason", "合并", "--yes")
    failed = runner.invoke(main, ["seal", "resume", "CLI-1"])
    assert failed.exit_code == 1
    assert isinstance(failed.exception, InvalidSealTransition)
    assert "revocation is final" in str(failed.exception)
    refused = runner.invoke(main, ["seal", "revoke", "CLI-1", "--reason", "x"], input="n\n")
    assert refused.exit_code == 1 and "Aborted" in refused.output
