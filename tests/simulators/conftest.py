"""Fixtures shared by the simulator tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.simulators.payloads import make_signed_pdf


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "provincial"


@pytest.fixture(scope="session")
def signed_pdf() -> bytes:
    return make_signed_pdf()
