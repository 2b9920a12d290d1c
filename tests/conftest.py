"""Shared fixtures: service availability, PostgreSQL databases, the dev stack."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_ADMIN_URL = os.environ.get(
    "EHUB_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def require_or_skip(reason: str) -> None:
    """Skip with a one-line reason — or fail in CI, where every service must be present."""
    if os.environ.get("EHUB_REQUIRE_SERVICES") == "1":
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def need_binary(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        require_or_skip(f"{name} not installed (Debian package {package}; `make system-deps`)")
    assert path is not None
    return path


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test; dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"ehub_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        require_or_skip(
            f"PostgreSQL not reachable at 127.0.0.1:5432 ({str(exc.orig).splitlines()[0]})"
        )
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hub.db'}"
    return str(request.getfixturevalue("pg_url"))


@contextlib.contextmanager
def tansu_broker(port: int | None = None, *, advertised: str | None = None) -> Iterator[str]:
    """A tansu broker (in memory) of the caller's own on loopback ``port`` (default: a
    free one), advertising ``advertised`` (default: itself; a proxy's address when the
    clients must come back through a proxy); yields its own ``host:port``."""
    import subprocess
    import time

    from ehub import devstack

    try:
        binary = devstack.tansu_binary()
    except Exception as exc:
        require_or_skip(f"tansu broker binary unavailable: {exc}")
    port = port or devstack.free_port()
    own = f"127.0.0.1:{port}"
    proc = subprocess.Popen(
        [binary, "broker", "--listener-url", f"tcp://{own}",
         "--advertised-listener-url", f"tcp://{advertised or own}",
         "--storage-engine", "memory://tansu/"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        devstack._wait_tcp(port, "broker", proc.pid)
        time.sleep(0.2)
        yield own
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def broker() -> Iterator[str]:
    """A tansu broker on a free loopback port for the whole session."""
    with tansu_broker() as address:
        yield address


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """In CI (EHUB_REQUIRE_SERVICES=1) a skipped test is a failed test: every service,
    binary and database the suite needs must be there."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if (
        report.skipped
        and os.environ.get("EHUB_REQUIRE_SERVICES") == "1"
        and not hasattr(report, "wasxfail")
    ):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where nothing may be skipped: {report.longrepr}"
