"""Shared set-up of the pipeline tests: ingest the market-regulation source by its YAML spec."""

from __future__ import annotations

import json

import pytest

from ehub.config import Settings
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
        env_name(spec.connection), json.dumps({"conn_type": "generic", "extra": {"url": url}})
    )
    extract.run(settings, store, spec)
    normalize.run(settings, store, spec)
