"""``seal_fast_per_s`` measures real, valid seals (the bench figure of the fast path)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ehub.bench_fastseal import seal_fast_per_s
from signing.pki import ensure_dev_pki
from tests.ehub.pipeline_support import market_env


def test_seal_fast_per_s_reports_rates(tmp_path: Path) -> None:
    pki = ensure_dev_pki(tmp_path / "pki", passphrase="bench-test-passphrase")
    result = seal_fast_per_s(pki, 80)
    assert result["n"] == 80 and result["level"] == "B-B"
    assert result["per_s"] == max(result["per_s_one_process"], result["per_s_pool"]) > 0
    assert abs(result["per_core_per_s"] * result["workers"] - result["per_s_pool"]) <= 0.2
    assert result["stamp_image"] is True
    assert result["mean_pdf_bytes"] > 10_000  # font subset, seal picture and QR code embedded


def test_seal_fast_per_s_seals_the_stores_licenses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = market_env(tmp_path, monkeypatch, count=12, seed=3)
    try:
        result = seal_fast_per_s(env.settings, 30)  # the store's licenses, cycled
    finally:
        env.store.dispose()
    assert result["n"] == 30 and result["per_s"] > 0 and result["stamp_image"] is True
