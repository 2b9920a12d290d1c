"""Lineage: signed, timestamped checkpoints; ``ehub audit verify`` naming the row of
each alteration, deletion and swap; ``ehub trace`` telling a license's story."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import delete, select, update

from connectors.platform import ProvincialClient
from ehub.audit import GENESIS, Event, _digest, append
from ehub.audit_checkpoint import make_checkpoint
from ehub.cli import main
from ehub.config import Settings
from ehub.pipeline import deliver, seal
from ehub.store.db import Store, utcnow
from ehub.store.models import AuditEvent, LicenseRow
from signing.pki import DevPKI, ensure_dev_pki
from signing.pki_services import serve_pki
from simulators.provincial import create_app
from tests.ehub.pipeline_support import market_env


@dataclass
class Chain:
    settings: Settings
    store: Store
    pki: DevPKI


def _settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    monkeypatch.setenv("EHUB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("EHUB_DATABASE_URL", url)
    return Settings.from_env(home=tmp_path / "home", out_dir=tmp_path / "out", database_url=url)


@pytest.fixture
def chain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Chain]:
    """Rows 1-5 events, row 6 a timestamped checkpoint covering them, rows 7-10 events."""
    settings = _settings(tmp_path, monkeypatch)
    store = Store(settings.database_url)
    store.migrate()
    with store.session() as s:
        append(
            s,
            [
                Event("extracted", "dept.src", None, {"rows": 2}),
                Event("normalized", "L1", 1, {"raw_id": 1}),
                Event("normalized", "L2", 1, {"raw_id": 2}),
            ],
        )
    with store.session() as s:
        append(
            s,
            [
                Event("sealed", "L1", 1, {"level": "B-B"}),
                Event("sealed", "L2", 1, {"level": "B-B"}),
            ],
        )
    pki = ensure_dev_pki(settings.home / "pki")
    with serve_pki(pki):
        cp = make_checkpoint(settings, store)
    assert (cp.row_id, cp.last_id, cp.count, cp.timestamped) == (6, 5, 5, True)
    with store.session() as s:
        append(
            s,
            [
                Event("delivered", "L1", 1, {"destination": "provincial", "receipt": "R1"}),
                Event("delivered", "L2", 1, {"destination": "provincial", "receipt": "R2"}),
                Event("returned", "L1", 1, {"topic": "t1"}),
                Event("returned", "L2", 1, {"topic": "t2"}),
            ],
        )
    yield Chain(settings, store, pki)
    store.dispose()


def _verify() -> tuple[int, dict[str, object], str]:
    runner = CliRunner()
    as_json = runner.invoke(main, ["audit", "verify", "--json"])
    text = runner.invoke(main, ["audit", "verify"])
    assert as_json.exit_code == text.exit_code, (as_json.output, text.output)
    return as_json.exit_code, json.loads(as_json.output), text.output


def _messages(report: dict[str, object]) -> str:
    problems = report["problems"]
    assert isinstance(problems, list)
    return " | ".join(p["message"] for p in problems)


def _found(report: dict[str, object]) -> set[tuple[int, str]]:
    problems = report["problems"]
    assert isinstance(problems, list)
    return {(p["row_id"], p["kind"]) for p in problems}


def _rechain(store: Store) -> None:
    """What a forger with database access does: recompute every hash and link."""
    with store.session() as s:
        prev = GENESIS
        for row in s.scalars(select(AuditEvent).order_by(AuditEvent.id)):
            at = row.at if row.at.tzinfo else row.at.replace(tzinfo=utcnow().tzinfo)
            row.prev_hash = prev
            row.hash = _digest(
                prev, row.event, row.subject, row.version, row.detail, at.isoformat()
            )
            prev = row.hash


def test_a_clean_chain_with_a_checkpoint_verifies(chain: Chain) -> None:
    code, report, text = _verify()
    assert code == 0, text
    assert report["ok"] and report["rows"] == 10 and report["checkpoints"] == 1
    assert report["timestamped"] == 1 and report["uncovered"] == 5
    assert "audit chain intact" in text


def test_altered_deleted_and_swapped_rows_are_each_reported_with_their_row(chain: Chain) -> None:
    with chain.store.session() as s:
        # one field of one row: the raw record a normalization came from
        s.execute(update(AuditEvent).where(AuditEvent.id == 2).values(detail={"raw_id": 99}))
        s.execute(delete(AuditEvent).where(AuditEvent.id == 4))
        r8, r9 = s.get(AuditEvent, 8), s.get(AuditEvent, 9)
        assert r8 is not None and r9 is not None
        a = (r8.event, r8.subject, r8.version, dict(r8.detail), r8.at)
        b = (r9.event, r9.subject, r9.version, dict(r9.detail), r9.at)
        r8.event, r8.subject, r8.version, r8.detail, r8.at = b
        r9.event, r9.subject, r9.version, r9.detail, r9.at = a
    code, report, text = _verify()
    assert code == 1
    assert _found(report) == {
        (2, "altered"),
        (5, "deleted"),  # the row after the hole: its link points at nothing
        (6, "checkpoint_coverage"),  # the checkpoint signed 5 rows up to row 5, 4 are left
        (8, "swapped"),
        (9, "swapped"),
    }
    for needle in (
        "row 2: content does not match",
        "ids 4..4 are missing",
        "row 8: content swapped with row 9",
        "row 9: content swapped with row 8",
        "checkpoint row 6: 4 rows up to row 5",
    ):
        assert needle in _messages(report)
    assert all(f"│ {row} " in text for row in (2, 5, 6, 8, 9)), text


def test_moving_whole_rows_breaks_the_links(chain: Chain) -> None:
    with chain.store.session() as s:
        rows = {r.id: r for r in s.scalars(select(AuditEvent).where(AuditEvent.id.in_([8, 9])))}
        cols = ("at", "event", "subject", "version", "detail", "prev_hash", "hash")
        a = {c: getattr(rows[8], c) for c in cols}
        b = {c: getattr(rows[9], c) for c in cols}
        for c in cols:
            setattr(rows[8], c, b[c])
            setattr(rows[9], c, a[c])
    code, report, _text = _verify()
    assert code == 1
    assert {(8, "reordered"), (9, "reordered")} <= _found(report)


def test_a_rewritten_chain_is_caught_by_the_signed_checkpoint(chain: Chain) -> None:
    with chain.store.session() as s:
        s.execute(update(AuditEvent).where(AuditEvent.id == 3).values(subject="L9"))
    _rechain(chain.store)  # every hash consistent again: only the checkpoint knows
    code, report, _text = _verify()
    assert code == 1
    assert _found(report) == {(6, "checkpoint_coverage")}
    assert "row 5 no longer has the hash the checkpoint signed" in _messages(report)


def test_a_forged_checkpoint_signature_is_reported(chain: Chain) -> None:
    with chain.store.session() as s:
        row = s.get(AuditEvent, 6)
        assert row is not None
        detail = dict(row.detail)
        sig = bytearray(base64.b64decode(detail["signature"]))
        sig[-1] ^= 0x01
        detail["signature"] = base64.b64encode(bytes(sig)).decode()
        row.detail = detail
    _rechain(chain.store)
    code, report, _text = _verify()
    assert code == 1
    assert _found(report) == {(6, "checkpoint_signature")}
    assert "signature does not verify" in _messages(report)


def test_a_checkpoint_made_while_the_tsa_is_down_is_signed_but_untimestamped(
    chain: Chain, caplog: pytest.LogCaptureFixture
) -> None:
    cp = make_checkpoint(chain.settings, chain.store, timeout=2.0)  # nothing serves the TSA
    assert not cp.timestamped and cp.timestamp is None
    assert (cp.last_id, cp.count) == (10, 10)
    assert any("untimestamped" in r.message for r in caplog.records)
    result = CliRunner().invoke(main, ["audit", "checkpoint", "--no-timestamp"])
    assert result.exit_code == 0 and "untimestamped" in result.output, result.output
    code, report, text = _verify()
    assert code == 0, text
    assert report["checkpoints"] == 3 and report["timestamped"] == 1
    assert "checkpoint row 11 is not timestamped" in text


def _platform_client(platform: TestClient) -> ProvincialClient:
    def forward(request: httpx.Request) -> httpx.Response:
        r = platform.request(
            request.method,
            request.url.raw_path.decode(),
            content=request.content,
            headers=dict(request.headers),
        )
        return httpx.Response(r.status_code, content=r.content, headers=r.headers)

    return ProvincialClient(
        "http://provincial.test", "dev-provincial-token", transport=httpx.MockTransport(forward)
    )


def test_trace_tells_extraction_normalization_sealing_and_delivery_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = market_env(tmp_path, monkeypatch, count=3, seed=5)
    monkeypatch.setenv("EHUB_HOME", str(env.settings.home))
    monkeypatch.setenv("EHUB_DATABASE_URL", env.settings.database_url)
    try:
        seal.run(env.settings, env.store)
        with TestClient(create_app(tmp_path / "platform", token="dev-provincial-token")) as p:
            result = deliver.run(env.settings, env.store, client=_platform_client(p))
        assert result.counts["delivered"] == 3
        with env.store.session() as s:
            ident = s.scalar(select(LicenseRow.identifier).order_by(LicenseRow.id).limit(1))
        assert ident
        runner = CliRunner()
        out = runner.invoke(main, ["trace", ident, "--json"])
        assert out.exit_code == 0, out.output
        story = json.loads(out.output)
        assert story["kind"] == "license" and len(story["versions"]) == 1
        v1 = story["versions"][0]
        steps = [st["step"] for st in v1["steps"]]
        assert steps == ["extracted", "normalized", "sealed", "delivered"], steps
        assert v1["steps"][0]["detail"]["source"] == "market_regulation.business_licenses"
        assert v1["steps"][2]["detail"]["level"] == v1["facts"]["signatures"][0]["level"]
        by_dest = {d["destination"]: d for d in v1["deliveries"]}
        delivery = by_dest["provincial"]
        assert delivery["state"] == "delivered"
        assert by_dest["national"]["state"] == "pending"  # its stage has not run
        assert delivery["receipt"] and v1["steps"][3]["detail"]["receipt"] == delivery["receipt"]
        table = runner.invoke(main, ["trace", ident])
        flat = "".join(table.output.split())
        assert table.exit_code == 0 and "delivered" in flat and ident in flat
        assert runner.invoke(main, ["trace", "NO-SUCH-ID"]).exit_code == 1
    finally:
        env.store.dispose()


def test_checkpoint_is_a_stage_the_dags_can_run(chain: Chain) -> None:
    from ehub.tasks import run_stage

    counts = run_stage("checkpoint", chain.settings)
    assert counts == {
        "stage": "checkpoint",
        "batches": 1,
        "covered": 10,
        "last_id": 10,
        "timestamped": False,
    }
