"""A hub whose platform token is unset never sends the dev simulator's token abroad."""

from __future__ import annotations

from pathlib import Path

import pytest

from ehub.config import Settings
from ehub.errors import ConfigError
from ehub.pipeline.deliver import client_for


@pytest.mark.parametrize("destination", ["provincial", "national"])
def test_the_dev_token_goes_to_loopback_only(
    destination: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("EHUB_PROVINCIAL_TOKEN", "EHUB_NATIONAL_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    url = f"{destination}_url"
    local = Settings.from_env(home=tmp_path, **{url: "https://127.0.0.1:9443"})
    client_for(local, destination).close()
    remote = Settings.from_env(home=tmp_path, **{url: "https://platform.sd.gov.cn"})
    with pytest.raises(ConfigError, match=f"EHUB_{destination.upper()}_TOKEN is not set"):
        client_for(remote, destination)
    configured = Settings.from_env(
        home=tmp_path, **{url: "https://platform.sd.gov.cn", f"{destination}_token": "s3cr3t-x"}
    )
    client_for(configured, destination).close()
