"""Build a department connector from a source spec and its connection.

The spec says *what* to read; the connection (resolved by id, see
:mod:`ehub.sources.connections`) says *where* and with which secret. Also
resolves mapping lookups per batch (:class:`LookupResolver`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from connectors.source import Source
from connectors.sql import SqlSource, SqlSourceSpec
from ehub.config import Settings
from ehub.errors import ConfigError
from ehub.sources.connections import ConnectionInfo, resolve
from ehub.sources.mapping import compile_field
from ehub.sources.spec import EndpointLookup, SourceSpec, SqlLookup


def build_source(spec: SourceSpec, settings: Settings | None = None) -> Source:
    home = settings.home if settings else None
    if spec.connection is None:  # kind api: nothing to pull
        raise ConfigError(
            f"source {spec.id}: kind {spec.kind} is not pulled — its records are posted to "
            f"the hub's API (POST /v1/sources/{spec.id}/licenses)"
        )
    conn = resolve(spec.connection, home)
    builder = _BUILDERS[spec.kind]
    return builder(spec, conn)


def sql_url(conn: ConnectionInfo) -> str:
    url = conn.get("url") or conn.uri
    if not url and conn.host:
        auth = f"{conn.login}:{conn.password}@" if conn.login else ""
        port = f":{conn.port}" if conn.port else ""
        url = f"{conn.conn_type or 'postgresql+psycopg'}://{auth}{conn.host}{port}/{conn.schema}"
    return str(conn.require("a database URL (extra.url)", url))


def _sql(spec: SourceSpec, conn: ConnectionInfo) -> Source:
    assert spec.sql is not None and spec.cursor.field
    return SqlSource(
        SqlSourceSpec(
            name=spec.id,
            url=sql_url(conn),
            table=spec.sql.table,
            key_column=spec.key,
            cursor_column=spec.cursor.field,
            batch_size=spec.batch_size,
            start=spec.cursor.start,
        )
    )


def _rest(spec: SourceSpec, conn: ConnectionInfo) -> Source:
    from connectors.rest import RestSource, RestSourceSpec

    r = spec.rest
    assert r is not None and spec.cursor.field
    base = conn.require("the API base URL (host)", conn.host)
    if "://" not in base:
        base = f"https://{base}" + (f":{conn.port}" if conn.port else "")
    token = conn.password or conn.get("token", "")
    return RestSource(
        RestSourceSpec(
            name=spec.id,
            base_url=base,
            path=r.path,
            token=token,
            auth_header=r.auth_header,
            auth_scheme=r.auth_scheme,
            params=dict(r.params),
            records_path=r.records,
            pagination=r.pagination,
            page_size=r.page_size,
            next_cursor_path=r.next_cursor,
            since_param=r.since_param,
            key_field=spec.key,
            version_field=spec.cursor.field,
            start=spec.cursor.start,
            conn_id=spec.connection or "",
            batch_size=spec.batch_size,
        )
    )


def _files(spec: SourceSpec, conn: ConnectionInfo) -> Source:
    from connectors.files import FileDropSource, FileDropSpec

    f = spec.files
    assert f is not None
    folder = Path(conn.require("the drop folder (extra.path)", conn.get("path") or conn.host))
    processed = Path(f.processed_dir)
    return FileDropSource(
        FileDropSpec(
            name=spec.id,
            folder=folder,
            pattern=f.pattern,
            format=f.format,
            encoding=spec.encoding,
            record_tag=f.record_tag,
            xsd=Path(f.xsd) if f.xsd else None,
            sheet=f.sheet,
            processed_dir=processed if processed.is_absolute() else folder / processed,
            key_field=spec.key,
            batch_size=spec.batch_size,
        )
    )


def _kafka(spec: SourceSpec, conn: ConnectionInfo) -> Source:
    from connectors.kafka_source import KafkaSource, KafkaSourceSpec

    k = spec.kafka
    assert k is not None
    servers = conn.get("bootstrap_servers") or (
        f"{conn.host}:{conn.port}" if conn.host and conn.port else conn.host
    )
    return KafkaSource(
        KafkaSourceSpec(
            name=spec.id,
            bootstrap_servers=str(conn.require("bootstrap servers", servers)),
            topic=k.topic,
            # The connection may name the group per environment (staging vs production).
            group_id=str(conn.get("group_id") or k.group_id or f"ehub.{spec.id}"),
            key_field=spec.key,
            encoding=spec.encoding,
            batch_size=spec.batch_size,
        )
    )


_BUILDERS = {"sql": _sql, "rest": _rest, "files": _files, "kafka": _kafka}


class LookupResolver:
    """Resolves a spec's mapping lookups for a batch of payloads.

    Values are cached for the run, so a batch costs one query per lookup and
    distinct new key set (or one request per new key for endpoints).
    """

    def __init__(self, spec: SourceSpec, source: Any) -> None:
        self.spec = spec
        self.source = source
        self.fields = []
        for target, fm in spec.mapping.items():
            if fm.lookup is not None:
                keyed = fm.model_copy(
                    update={"lookup": None, "codelist": None, "date": None, "datetime_": None,
                            "integer": False, "split": None, "default": None}
                )  # fmt: skip
                self.fields.append((target, fm.lookup, compile_field(target, keyed, spec).get))
        self.cache: dict[str, dict[str, Any]] = {t: {} for t, _, _ in self.fields}
        self._endpoint: Any = None

    def resolve(self, payloads: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [{} for _ in payloads]
        for target, lk, key_of in self.fields:
            keys = [str(key_of(p) or "") for p in payloads]
            cache = self.cache[target]
            missing = sorted({k for k in keys if k and k not in cache})
            if missing:
                cache.update({k: None for k in missing})
                cache.update(self._fetch(lk, missing))
            for i, k in enumerate(keys):
                if k and cache.get(k) is not None:
                    out[i][target] = cache[k]
        return out

    def _fetch(self, lk: SqlLookup | EndpointLookup, keys: list[str]) -> dict[str, Any]:
        if isinstance(lk, SqlLookup):
            return dict(self.source.lookup(lk.table, lk.key, lk.value, keys))
        if self._endpoint is None:
            self._endpoint = self.source.lookup_client()
        found = {}
        for k in keys:
            v = self._endpoint.get(lk.endpoint, k, lk.value)
            if v is not None:
                found[k] = v
        return found


def describe_connection(spec: SourceSpec, settings: Settings | None = None) -> str:
    """Where the spec's connection points, without secrets (for previews)."""
    if spec.connection is None:
        return f"posted to POST /v1/sources/{spec.id}/licenses"
    try:
        conn = resolve(spec.connection, settings.home if settings else None)
    except ConfigError as exc:
        return f"unresolved ({exc})"
    if spec.kind == "sql":
        from sqlalchemy.engine import make_url

        return make_url(sql_url(conn)).render_as_string(hide_password=True)
    if spec.kind == "files":
        return str(conn.get("path") or conn.host)
    if spec.kind == "kafka":
        return str(conn.get("bootstrap_servers") or conn.host)
    return conn.host
