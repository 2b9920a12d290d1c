"""``ehub api-client``: the token is shown once, only its hash is kept, revocation bites."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from ehub.api_clients import authenticate, token_digest
from ehub.cli import main
from ehub.store.db import Store
from ehub.store.models import ApiClient
from signing.pki import DEV_DEPARTMENT_USCC


def test_create_list_revoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    monkeypatch.setenv("EHUB_DATABASE_URL", url)
    monkeypatch.setenv("EHUB_HOME", str(tmp_path / "home"))
    run = CliRunner().invoke
    made = run(main, ["api-client", "create", "scjg-djxt", "--department-uscc",
                      DEV_DEPARTMENT_USCC, "--source", "market_regulation.issuing_api",
                      "--token-only"])  # fmt: skip
    assert made.exit_code == 0, made.output
    token = made.output.strip()
    store = Store(url)
    try:
        with store.session() as s:
            row = s.scalars(select(ApiClient)).one()
            assert row.token_sha256 == token_digest(token) and token not in str(vars(row))
        assert authenticate(store, token) is not None
        listed = run(main, ["api-client", "list"])
        assert "scjg-djxt" in listed.output and token not in listed.output
        assert "active" in listed.output
        bad = run(main, ["api-client", "create", "x", "--department-uscc", "123",
                         "--source", "market_regulation.issuing_api"])  # fmt: skip
        assert bad.exit_code != 0 and "not valid" in bad.output
        pulled = run(main, ["api-client", "create", "y", "--department-uscc",
                            DEV_DEPARTMENT_USCC, "--source", "market_regulation.business_licenses"])  # fmt: skip
        assert pulled.exit_code != 0 and "kind sql" in pulled.output
        assert run(main, ["api-client", "revoke", "scjg-djxt"]).exit_code == 0
        assert authenticate(store, token) is None
        again = run(main, ["api-client", "revoke", "scjg-djxt"])
        assert again.exit_code != 0 and "revoked already" in again.output
    finally:
        store.dispose()
