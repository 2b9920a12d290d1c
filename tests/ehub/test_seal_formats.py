"""Seal format per license type: PAdES PDF, OFD with a GB/T 38540 SM2 seal, or both.

The market-regulation licenses (type W001) are sealed by the real seal stage
with their template's ``seal_formats`` set to each choice; every document
written is checked with ``ehub verify`` (the OFD against the dev SM2 seal
maker and the license's status in the hub store, the PDF against the dev
PKI root), and its recorded hash against the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import delete, func, select, update

from ehub import seals
from ehub.cli_verify import verify
from ehub.errors import ConfigError
from ehub.licenses import newest_status
from ehub.pipeline import seal
from ehub.pipeline.seal_ofd import OFD_LEVEL
from ehub.store.models import AuditEvent, DeliveryRow, LicenseRow, SignatureRow
from ehub.templates import SEAL_FORMATS, _parse, templates
from tests.ehub.pipeline_support import MarketEnv, market_env

COUNT = 3
TYPE = "11100000000013338W001"  # the market-regulation source's business licenses


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MarketEnv]:
    e = market_env(tmp_path, monkeypatch, count=COUNT, seed=11, batch_size=2)
    # `ehub verify` reads the dev trust anchors and the store from the environment.
    monkeypatch.setenv("EHUB_HOME", str(e.settings.home))
    monkeypatch.setenv("EHUB_DATABASE_URL", e.settings.database_url)
    yield e
    e.store.dispose()


def configure(monkeypatch: pytest.MonkeyPatch, formats: tuple[str, ...]) -> None:
    """Give the business-license template ``formats`` (the shipped one is restored after)."""
    tpl = dataclasses.replace(templates()[TYPE], seal_formats=formats)  # type: ignore[arg-type]
    monkeypatch.setitem(templates(), TYPE, tpl)


def signatures(env: MarketEnv) -> list[dict[str, Any]]:
    with env.store.session() as s:
        rows = s.execute(
            select(
                LicenseRow.identifier, SignatureRow.format, SignatureRow.level,
                SignatureRow.path, SignatureRow.sha256,
            ).join(LicenseRow, LicenseRow.id == SignatureRow.license_id)
        ).all()  # fmt: skip
    return [r._asdict() for r in rows]


def ehub_verify(path: str, *options: str) -> dict[str, Any]:
    result = CliRunner().invoke(verify, [path, "--json", *options])
    report: dict[str, Any] = json.loads(result.output)
    assert result.exit_code == report["exit_code"]
    return report


def count(env: MarketEnv, model: type, *where: object) -> int:
    with env.store.session() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)  # type: ignore[arg-type]


@pytest.mark.parametrize("formats", [("ofd",), ("pades", "ofd"), ("pades",)])
def test_each_configured_format_is_written_recorded_and_verifies(
    env: MarketEnv, monkeypatch: pytest.MonkeyPatch, formats: tuple[str, ...]
) -> None:
    configure(monkeypatch, formats)
    result = seal.run(env.settings, env.store)
    assert result.counts == {"sealed": COUNT, "held": 0}
    with env.store.session() as s:
        assert set(s.scalars(select(LicenseRow.state))) == {"sealed"}

    rows = signatures(env)
    by_format: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_format.setdefault(row["format"], []).append(row)
    # The structured XML is signed whatever the document formats.
    assert sorted(by_format) == sorted({*formats, "xmldsig"})
    assert all(len(v) == COUNT for v in by_format.values())
    for row in rows:
        data = Path(row["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row["sha256"], row["path"]

    market_seal = seals.get_seal(env.store, seal.DEV_SEAL_CODE)
    for row in by_format.get("ofd", []):
        assert row["level"] == OFD_LEVEL and row["path"].endswith(".ofd")
        report = ehub_verify(row["path"], "--no-register")  # the seal alone
        assert report["kind"] == "ofd" and report["valid"], report["result"]["reasons"]
        assert report["result"]["license_identifier"] == row["identifier"]
        (stamp,) = report["result"]["seals"]
        assert stamp["seal_name"] == market_seal.name  # the registry's seal, in SM2
        assert stamp["seal_id"] == market_seal.code
    for row in by_format.get("pades", []):
        assert row["path"].endswith(".pdf")
        report = ehub_verify(row["path"], "--no-register")
        assert report["kind"] == "pdf" and report["valid"], report["result"]["reasons"]
    # With the hub register (the default), a license cancelled at the source is not valid.
    for row in rows:
        if row["format"] in ("ofd", "pades"):
            status = newest_status(env.store, row["identifier"])
            report = ehub_verify(row["path"])
            assert report["valid"] == (status == "valid"), (status, report["result"]["reasons"])
            assert report["result"]["license_status"] == status
    out = env.settings.out_dir / "licenses"
    assert len(list(out.glob("*.ofd"))) == (COUNT if "ofd" in formats else 0)
    assert len(list(out.glob("*.pdf"))) == (COUNT if "pades" in formats else 0)

    # Delivery sends the PDF: an OFD-only license gets no delivery outbox rows.
    deliveries = count(env, DeliveryRow, DeliveryRow.kind == "license")
    assert (deliveries > 0) == ("pades" in formats)
    with env.store.session() as s:
        details = list(s.scalars(select(AuditEvent.detail).where(AuditEvent.event == "sealed")))
    assert [d["format"] for d in details] == ["+".join(formats)] * COUNT
    assert seal.run(env.settings, env.store).counts == {"sealed": 0, "held": 0}


def test_a_tampered_ofd_from_the_stage_is_reported_invalid(
    env: MarketEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The verdicts above can fail: one changed byte of a recorded OFD is caught."""
    configure(monkeypatch, ("ofd",))
    seal.run(env.settings, env.store)
    path = Path(next(r["path"] for r in signatures(env) if r["format"] == "ofd"))
    from signing.ofd_package import read_package, write_package

    entries = read_package(path.read_bytes())
    entries["OFD.xml"] = entries["OFD.xml"].replace(b"ehub", b"EHUB", 1)
    path.write_bytes(write_package(entries))
    report = ehub_verify(str(path))
    assert report["exit_code"] == 1 and not report["valid"]
    assert "check_value_mismatch" in json.dumps(report)


def test_the_sm2_seal_is_made_once_per_registered_seal(
    env: MarketEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, ("ofd",))
    seal.run(env.settings, env.store)
    made = sorted((env.settings.home / "pki" / "sm2" / "seals").glob("*.esl"))
    assert len(made) == 1  # every license here has the market-regulation seal
    with env.store.session() as s:
        s.execute(update(LicenseRow).values(state="normalized"))  # sealed again from scratch
        s.execute(delete(SignatureRow))
    assert seal.run(env.settings, env.store).counts["sealed"] == COUNT
    assert sorted((env.settings.home / "pki" / "sm2" / "seals").glob("*.esl")) == made


BASE = {"type_code": TYPE, "title": "营业执照"}


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (["pdf"], "'pdf' is not one of pades, ofd"),
        ([], "non-empty list"),
        ("ofd", "non-empty list"),
        (["ofd", "ofd"], "'ofd' given twice"),
    ],
)
def test_a_bad_seal_formats_value_names_the_template_and_field(value: Any, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _parse("construction_permit.json", {**BASE, "seal_formats": value})
    message = str(caught.value)
    assert message.startswith("license template construction_permit.json: seal_formats")
    assert says in message


def test_seal_formats_default_and_order() -> None:
    assert _parse("t.json", BASE).seal_formats == ("pades",)
    assert _parse("t.json", {**BASE, "seal_formats": ["ofd", "pades"]}).seal_formats == (
        "pades",
        "ofd",
    )
    for tpl in templates().values():  # every shipped template loads with a valid choice
        assert tpl.seal_formats and set(tpl.seal_formats) <= set(SEAL_FORMATS)
