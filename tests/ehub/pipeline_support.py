"""Shared set-up of the pipeline tests: ingest the market-regulation source by its YAML spec."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ehub.config import Settings
from ehub.offices_dev import ensure_dev_offices
from ehub.pipeline import extract, normalize
from ehub.sources.connections import env_name
from ehub.sources.loader import find_spec
from ehub.store.db import Store

MARKET = "market_regulation.business_licenses"


def ingest_market(
    settings: Settings, store: Store, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Extract and normalize the market-regulation database at ``url``."""
    spec = find_spec(MARKET)
    monkeypatch.setenv(
        env_name(spec.connection or ""), json.dumps({"conn_type": "generic", "extra": {"url": url}})
    )
    extract.run(settings, store, spec)
    normalize.run(settings, store, spec)


@dataclass
class MarketEnv:
    """A hub store holding the normalized licenses of a generated market database."""

    settings: Settings
    store: Store
    source_url: str


def market_env(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    count: int,
    seed: int,
    defect_rate: float = 0.0,
    **settings: Any,
) -> MarketEnv:
    """Generate ``count`` source rows, migrate a hub store under ``tmp_path``, ingest them."""
    from simulators.market_regulation import generate

    mr = f"sqlite:///{tmp_path / 'mr.db'}"
    generate(mr, count=count, defect_rate=defect_rate, seed=seed)
    hub = Settings.from_env(
        home=tmp_path / "home",
        out_dir=tmp_path / "out",
        database_url=f"sqlite:///{tmp_path / 'hub.db'}",
        market_regulation_url=mr,
        **settings,
    )
    store = Store(hub.database_url)
    store.migrate()
    ensure_dev_offices(store)  # one office per city: every record returned once
    ingest_market(hub, store, mr, monkeypatch)
    return MarketEnv(hub, store, mr)
