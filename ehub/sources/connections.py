"""Resolve a spec's Airflow connection id to typed connection settings.

Secrets live in Airflow Connections, never in specs. The lookup order is the
one Airflow itself uses for environment connections, so the same setting
serves a task, ``ehub source preview`` and the tests:

1. ``AIRFLOW_CONN_<ID>`` in the environment — Airflow's JSON form
   (``{"conn_type": …, "host": …, "password": …, "extra": {…}}``) or a URI;
2. inside a running Airflow task, ``BaseHook.get_connection`` (metadata DB,
   secrets backends);
3. the embedded dev stack's ``$EHUB_HOME/dev/stack.json`` (``connections``).

Conventions per kind: ``sql`` → ``extra.url`` (a SQLAlchemy URL) or a URI;
``rest`` → ``host`` = base URL, ``password`` = token (or ``extra.token``);
``files`` → ``extra.path`` = the drop folder; ``kafka`` →
``extra.bootstrap_servers`` or ``host:port``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from ehub.config import default_home, stack_file
from ehub.errors import ConfigError


@dataclass(frozen=True)
class ConnectionInfo:
    conn_id: str
    conn_type: str = ""
    host: str = ""
    port: int | None = None
    login: str = ""
    password: str = field(default="", repr=False)
    schema: str = ""
    extra: dict[str, Any] = field(default_factory=dict, repr=False)
    uri: str = field(default="", repr=False)

    def get(self, name: str, default: Any = None) -> Any:
        return self.extra.get(name, default)

    def require(self, what: str, value: Any) -> Any:
        if not value:
            raise ConfigError(
                f"connection {self.conn_id!r} lacks {what}; set it in the Airflow connection "
                f"(or AIRFLOW_CONN_{self.conn_id.upper()})"
            )
        return value


def env_name(conn_id: str) -> str:
    return "AIRFLOW_CONN_" + conn_id.upper()


def resolve(conn_id: str, home: Path | None = None) -> ConnectionInfo:
    raw = os.environ.get(env_name(conn_id))
    if raw:
        return parse(conn_id, raw)
    info = _from_airflow(conn_id)
    if info is not None:
        return info
    stack = _stack_connections(home or default_home())
    if conn_id in stack:
        return parse(conn_id, json.dumps(stack[conn_id]))
    raise ConfigError(
        f"connection {conn_id!r} is not defined: create it in Airflow, set "
        f"{env_name(conn_id)}, or start the dev stack (`ehub dev up`)"
    )


def parse(conn_id: str, raw: str) -> ConnectionInfo:
    """Airflow's JSON connection form or a URI (``scheme://login:password@host:port/schema``)."""
    raw = raw.strip()
    if raw.startswith("{"):
        try:
            d = json.loads(raw)
        except ValueError as exc:
            raise ConfigError(f"connection {conn_id!r} is not valid JSON: {exc}") from exc
        extra = d.get("extra") or {}
        if isinstance(extra, str):
            extra = json.loads(extra) if extra else {}
        return ConnectionInfo(
            conn_id,
            str(d.get("conn_type") or ""),
            str(d.get("host") or ""),
            int(d["port"]) if d.get("port") else None,
            str(d.get("login") or ""),
            str(d.get("password") or ""),
            str(d.get("schema") or ""),
            dict(extra),
        )
    parts = urlsplit(raw)
    return ConnectionInfo(
        conn_id,
        parts.scheme,
        parts.hostname or "",
        parts.port,
        unquote(parts.username or ""),
        unquote(parts.password or ""),
        parts.path.lstrip("/"),
        {},
        uri=raw,
    )


def _from_airflow(conn_id: str) -> ConnectionInfo | None:
    if "AIRFLOW_CTX_DAG_ID" not in os.environ:  # only inside a running task
        return None
    try:
        from airflow.sdk.bases.hook import BaseHook

        c = BaseHook.get_connection(conn_id)
    except Exception:
        return None
    return ConnectionInfo(
        conn_id,
        c.conn_type or "",
        c.host or "",
        c.port,
        c.login or "",
        c.password or "",
        c.schema or "",
        dict(c.extra_dejson or {}),
    )


def _stack_connections(home: Path) -> dict[str, Any]:
    try:
        data = json.loads(stack_file(home).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return dict(data.get("connections", {}))
