"""10,000 license versions delivered while the platform simulator injects every fault
kind at 10 % of its requests and the delivery worker is killed three times at random
points; afterwards the platform holds every version exactly once and the hub shows each
delivered with the platform's own receipt.

The sealed document is one small real PAdES PDF shared by every license row (sealing
10,000 documents would take minutes and is not what is tested here); the simulator
checks documents structurally for the same reason (``--signature-check structural``;
its cryptographic check is tested in tests/simulators).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select, update

from ehub.config import Settings
from ehub.devstack import _wait_http, free_port
from ehub.pipeline import outbox
from ehub.pipeline.faults import EXIT_CODE
from ehub.pipeline.seal import ensure_dev_seal
from ehub.store.db import Store, insert_ignore, utcnow
from ehub.store.models import DeliveryRow, LicenseRow, SignatureRow
from simulators.market_regulation import generate
from tests.ehub.pipeline_support import ingest_market

COUNT = 10_000
PROVINCIAL = DeliveryRow.destination == "provincial"
KINDS = ("http500", "http503", "http429", "timeout", "reset", "slow", "lose_receipt", "partial")

_WORKER = r"""
from connectors.platform import ProvincialClient
from ehub.config import Settings
from ehub.pipeline import deliver
from ehub.pipeline.circuit import Circuit
from ehub.store.db import Store
settings = Settings.from_env()
store = Store(settings.database_url)
client = ProvincialClient(settings.provincial_url, settings.provincial_token, timeout=1.0)
# the circuit breaker is in play too, with a short cool-down (80 % of sends fail here)
circuit = Circuit(store, "provincial", threshold=5, cooldown=0.5)
print(deliver.run(settings, store, client=client, attempts=10, base_delay=0.02,
                  dead_after=10_000, circuit=circuit, kinds=["license"]).counts)
"""


def _small_sealed_pdf(settings: Settings, store: Store) -> bytes:
    """A one-page PDF with a real PAdES B-B seal of the dev PKI (a few KB: what is
    tested is delivery, not the size of documents on the wire)."""
    from reportlab.pdfgen import canvas

    from signing.pades import PadesSealer

    _seal_id, pki = ensure_dev_seal(settings, store)
    buf = io.BytesIO()
    page = canvas.Canvas(buf)
    page.drawString(72, 720, "ehub delivery fault test")
    page.save()
    sealer = PadesSealer(pki.seal_p12_path, pki.passphrase, level="B-B")
    return sealer.seal(buf.getvalue(), reason="test", location="test")


def _prepare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Settings, Store]:
    mr = f"sqlite:///{tmp_path / 'mr.db'}"
    generate(mr, count=COUNT, defect_rate=0.0, seed=17)
    settings = Settings.from_env(
        home=tmp_path / "home", out_dir=tmp_path / "out",
        database_url=f"sqlite:///{tmp_path / 'hub.db'}", market_regulation_url=mr,
        batch_size=1000,
    )  # fmt: skip
    store = Store(settings.database_url)
    store.migrate()
    ingest_market(settings, store, mr, monkeypatch)
    pdf = _small_sealed_pdf(settings, store)
    path = settings.out_dir / "shared.pdf"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pdf)
    seal_id, _pki = ensure_dev_seal(settings, store)
    pades = {"seal_id": seal_id, "format": "pades", "level": "B-B", "path": str(path),
             "sha256": hashlib.sha256(pdf).hexdigest(), "signed_at": utcnow()}  # fmt: skip
    with store.session() as s:
        rows = list(s.execute(select(LicenseRow.id, LicenseRow.identifier, LicenseRow.version)))
        insert_ignore(s, SignatureRow.__table__, [
            {**pades, "license_id": lid} for lid, _i, _v in rows
        ], ["license_id", "format"])  # fmt: skip
        outbox.insert(s, [outbox.row("license", "provincial", lid, i, v) for lid, i, v in rows])
        s.execute(update(LicenseRow).values(state="sealed"))
    return settings, store


def test_ten_thousand_versions_arrive_exactly_once_through_faults_and_kills(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, store = _prepare(tmp_path, monkeypatch)
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(DeliveryRow).where(PROVINCIAL)) == COUNT
    port = free_port()
    sim = subprocess.Popen(
        [sys.executable, "-m", "simulators", "provincial", "--port", str(port),
         "--state", str(tmp_path / "platform"), "--signature-check", "structural",
         "--timeout-delay", "2", "--rate-limit", "0"],
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{base}/healthz", "provincial simulator", sim.pid)
        mix = {"faults": [{"kind": k, "rate": 0.1, **({"delay": 0.2} if k == "slow" else {})}
                          for k in KINDS], "seed": 5}  # fmt: skip
        assert httpx.post(f"{base}/admin/faults/mix", json=mix).status_code == 200
        env = {
            **os.environ,
            "EHUB_HOME": str(settings.home), "EHUB_OUT_DIR": str(settings.out_dir),
            "EHUB_DATABASE_URL": settings.database_url, "EHUB_BATCH_SIZE": "100",
            "EHUB_PROVINCIAL_URL": base, "EHUB_PROVINCIAL_TOKEN": "dev-provincial-token",
        }  # fmt: skip
        rng = random.Random(2026)
        kills = [
            f"deliver:{rng.randint(1, 25)}:{rng.choice(['before', 'after'])}" for _ in range(3)
        ]
        for fault in kills:  # runs until one dies at its point (a run may also give up: 1)
            for _ in range(10):
                run = subprocess.run([sys.executable, "-c", _WORKER],
                                     env={**env, "EHUB_FAULT": fault}, capture_output=True,
                                     text=True, timeout=600)  # fmt: skip
                if run.returncode != 1:
                    break
            assert run.returncode == EXIT_CODE, (fault, run.stderr[-2000:])
        for _ in range(40):  # then runs until the outbox is empty (a run may give up: 1)
            run = subprocess.run([sys.executable, "-c", _WORKER], env=env, capture_output=True,
                                 text=True, timeout=600)  # fmt: skip
            with store.session() as s:
                left = s.scalar(select(func.count()).select_from(DeliveryRow)
                                .where(PROVINCIAL, DeliveryRow.state != "delivered"))  # fmt: skip
            if not left:
                break
        assert left == 0, run.stderr[-2000:]
        stats = httpx.get(f"{base}/admin/stats").json()
        held = httpx.get(f"{base}/admin/licenses").json()
    finally:
        sim.terminate()
        sim.wait(timeout=30)
    fired = stats["fault"]["fired_by_kind"]
    assert set(fired) == set(KINDS), fired  # every kind really happened
    assert stats["versions"] == COUNT and stats["accepted"] == COUNT  # each stored once
    assert stats["rejected"] == 0  # no CONFLICT: never the same version under another key
    platform = {(h["identifier"], h["version"]): h["receipt_id"] for h in held}
    with store.session() as s:
        hub = {
            (i, v): r
            for i, v, r in s.execute(
                select(LicenseRow.identifier, LicenseRow.version, DeliveryRow.receipt_id).join(
                    DeliveryRow, DeliveryRow.license_id == LicenseRow.id
                )
            )
        }
    assert hub == platform  # each delivered with the platform's own receipt
    print(json.dumps({"faults_fired": fired, "platform": stats}))
    store.dispose()
