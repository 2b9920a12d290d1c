"""The return-feed bench on PostgreSQL: a database of its own, sharded publishing,
dropped afterwards; an unreachable server is reported, not raised."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from ehub.bench_feeds import median_run, publish_figures_on_postgres
from ehub.config import Settings
from ehub.pipeline.publish import PARALLEL_MIN_ROWS
from tests.conftest import PG_ADMIN_URL, tansu_broker


@pytest.fixture
def own_broker() -> Iterator[str]:
    with tansu_broker() as address:
        yield address


def _bench_databases() -> list[str]:
    admin = create_engine(PG_ADMIN_URL)
    try:
        with admin.connect() as conn:
            return list(conn.scalars(text(
                "SELECT datname FROM pg_database WHERE datname LIKE 'ehub_bench_feeds_%'")))  # fmt: skip
    finally:
        admin.dispose()


def test_a_sharded_backlog_is_published_and_the_database_dropped(
    tmp_path: Path, own_broker: str
) -> None:
    settings = Settings.from_env(home=tmp_path / "home", out_dir=tmp_path / "out",
                                 broker=own_broker, publish_workers=2)  # fmt: skip
    n = PARALLEL_MIN_ROWS + 200
    before = _bench_databases()
    figures = publish_figures_on_postgres(settings, n, PG_ADMIN_URL)
    assert figures["store"].startswith("postgresql")
    assert figures["published"] == figures["messages"] >= n  # every office's share
    assert figures["publish_workers"] == 2
    assert figures["publish_per_s"] > 0
    assert _bench_databases() == before


def test_a_server_that_does_not_answer_is_reported(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    settings = Settings.from_env(home=tmp_path / "home", out_dir=tmp_path / "out")
    url = f"postgresql+psycopg://postgres:hush@127.0.0.1:{port}/postgres?connect_timeout=2"
    figures = publish_figures_on_postgres(settings, 10, url)
    assert set(figures) == {"skipped"}
    assert f"127.0.0.1:{port}" in figures["skipped"] and "hush" not in figures["skipped"]


def test_the_figure_is_the_median_run_with_every_run_beside_it() -> None:
    rates = iter([9000.0, 12000.0, 10500.0])
    got = median_run(lambda: {"publish_per_s": next(rates), "store": "sqlite"}, runs=3)
    assert got["publish_per_s"] == 10500.0
    assert got["runs_per_s"] == [9000.0, 12000.0, 10500.0]
    two = iter([8000.0, 11000.0])
    assert median_run(lambda: {"publish_per_s": next(two)}, runs=2)["publish_per_s"] == 8000.0
    skipped = {"skipped": "PostgreSQL at … did not answer"}
    assert median_run(lambda: dict(skipped), runs=3) == skipped
