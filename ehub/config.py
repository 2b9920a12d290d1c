"""Settings of the hub, read from the environment (and the dev-stack state file).

Secrets never live in specs or in the repository: they come from the
environment (or, inside Airflow, from Connections handed over by the hooks in
``plugins/``). This module only reads; it must not start anything.

Precedence for each setting: explicit argument > environment variable >
the running dev stack's state file (``$EHUB_HOME/dev/stack.json``) > default.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ehub.errors import ConfigError

if TYPE_CHECKING:
    from connectors.tls import ClientTls

ENV_PREFIX = "EHUB_"


def default_home() -> Path:
    """The hub's working folder: ``$EHUB_HOME`` or ``./var``."""
    return Path(os.environ.get("EHUB_HOME", "var")).resolve()


@dataclass(frozen=True)
class Settings:
    """Everything a pipeline stage needs to know about its surroundings."""

    home: Path
    """Working folder: dev PKI, dev-stack state, simulator state."""
    database_url: str
    """Hub store URL (SQLAlchemy). SQLite file under ``home`` by default."""
    out_dir: Path
    """Where sealed documents are written (``<out_dir>/licenses/<identifier>.pdf``)."""
    broker: str = ""
    """Kafka bootstrap servers, ``host:port[,host:port]``."""
    provincial_url: str = ""
    """Base URL of the provincial platform."""
    provincial_token: str = field(default="", repr=False)
    """Bearer token for the provincial platform (secret: never logged)."""
    platform_ca_bundle: str = ""
    """PEM file of the CAs the platforms' server certificates must chain to;
    empty: the public CAs httpx trusts."""
    platform_client_cert: str = ""
    """PEM file of the hub's TLS client certificate (mutual TLS); empty: none."""
    platform_client_key: str = ""
    """PEM file of that certificate's unencrypted key (a path, never the key)."""
    broker_ca_bundle: str = ""
    """PEM file of the CAs the broker's certificate must chain to: set it (or the
    client certificate) and every Kafka client of the hub uses TLS; empty: plaintext
    (the private-network listener of the production compose file)."""
    broker_client_cert: str = ""
    """PEM file of the TLS client certificate presented to the broker; empty: none."""
    broker_client_key: str = ""
    """PEM file of that certificate's unencrypted key (a path, never the key)."""
    national_url: str = ""
    """Base URL of the national platform."""
    national_token: str = field(default="", repr=False)
    """Bearer token for the national platform (secret: never logged)."""
    market_regulation_url: str = ""
    """SQLAlchemy URL of the market-regulation department database."""
    batch_size: int = 200
    """Records per batch in the hub's own stages (memory stays bounded by it)."""
    source_batch_size: int = 0
    """Records per extract batch for every source; 0 = each spec's ``batch_size``."""
    publish_workers: int = 0
    """Processes a publish stage run shards a backlog among (by office, on PostgreSQL);
    0 = one per core, at most 4; 1 = the stage's own process alone."""
    seal_workers: int = 0
    """Processes a seal stage run deals its pending licenses among (by identifier);
    0 = one per core, at most 4; 1 = the stage's own process alone."""
    verify_url: str = "http://127.0.0.1:8765/verify"
    """Public base URL of the verification endpoint; a license's QR code leads to
    ``<verify_url>/<identifier>`` (``ehub verify-server`` serves it)."""
    return_topic_prefix: str = "ehub.return.office."
    """Return feed topics are ``<prefix><office code>`` (one topic per office)."""
    return_divisions: str = "37"
    """Division prefixes (comma-separated) the hub reads from the provincial platform's
    return interface (属地返还); ``37`` is the whole province of Shandong."""
    fault: str = ""
    """Crash injection for tests: ``<stage>:<batch number>`` makes the stage
    exit the process abruptly after committing that many batches."""

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        home = Path(overrides.pop("home", None) or default_home())
        stack = _read_stack(home)
        env = os.environ

        def pick(name: str, default: str = "") -> str:
            if name in overrides:
                return str(overrides.pop(name))
            return env.get(ENV_PREFIX + name.upper()) or str(stack.get(name, "") or default)

        batch = pick("batch_size", "200")
        try:
            batch_size = int(batch)
        except ValueError as exc:
            raise ConfigError(f"EHUB_BATCH_SIZE must be an integer, got {batch!r}") from exc
        if batch_size < 1:
            raise ConfigError("EHUB_BATCH_SIZE must be >= 1")
        sbatch = pick("source_batch_size", "0")
        try:
            source_batch_size = int(sbatch)
        except ValueError as exc:
            raise ConfigError(f"EHUB_SOURCE_BATCH_SIZE must be an integer, got {sbatch!r}") from exc
        publish_workers = _processes(pick("publish_workers", "0"), "EHUB_PUBLISH_WORKERS")
        seal_workers = _processes(pick("seal_workers", "0"), "EHUB_SEAL_WORKERS")
        settings = cls(
            home=home,
            database_url=pick("database_url", f"sqlite:///{home / 'hub.db'}"),
            out_dir=Path(pick("out_dir", str(home.parent / "out" / "demo"))).resolve(),
            broker=pick("broker"),
            provincial_url=pick("provincial_url"),
            provincial_token=pick("provincial_token", "dev-provincial-token"),
            platform_ca_bundle=pick("platform_ca_bundle"),
            platform_client_cert=pick("platform_client_cert"),
            platform_client_key=pick("platform_client_key"),
            broker_ca_bundle=pick("broker_ca_bundle"),
            broker_client_cert=pick("broker_client_cert"),
            broker_client_key=pick("broker_client_key"),
            national_url=pick("national_url"),
            national_token=pick("national_token", "dev-national-token"),
            market_regulation_url=pick(
                "market_regulation_url", f"sqlite:///{home / 'sim' / 'market_regulation.db'}"
            ),
            batch_size=batch_size,
            source_batch_size=max(source_batch_size, 0),
            publish_workers=publish_workers,
            seal_workers=seal_workers,
            fault=pick("fault"),
            return_divisions=pick("return_divisions", "37"),
            verify_url=pick("verify_url", "http://127.0.0.1:8765/verify").rstrip("/"),
        )
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        return replace(settings, **overrides) if overrides else settings

    def platform_tls(self) -> ClientTls | None:
        """TLS of the links to the platforms, or ``None`` for httpx's defaults."""
        from connectors.tls import ClientTls

        return ClientTls.from_paths(
            self.platform_ca_bundle, self.platform_client_cert, self.platform_client_key
        )

    def broker_tls(self) -> ClientTls | None:
        """TLS of the hub's Kafka clients, or ``None`` for a plaintext listener."""
        from connectors.tls import ClientTls

        return ClientTls.from_paths(
            self.broker_ca_bundle, self.broker_client_cert, self.broker_client_key, "EHUB_BROKER"
        )

    def require(self, name: str) -> str:
        """Return a setting that must be present, or raise naming the variable."""
        value = getattr(self, name)
        if not value:
            raise ConfigError(
                f"{ENV_PREFIX}{name.upper()} is not set and no dev stack is running "
                f"(start one with `ehub dev up`)"
            )
        return str(value)


def stack_file(home: Path) -> Path:
    return home / "dev" / "stack.json"


def _read_stack(home: Path) -> dict[str, Any]:
    path = stack_file(home)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"dev stack state {path} is unreadable: {exc}") from exc
    return dict(data.get("settings", {}))


def _processes(raw: str, name: str) -> int:
    try:
        n = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc
    if n < 0:
        raise ConfigError(f"{name} must be >= 0 (0: one per core)")
    return n
