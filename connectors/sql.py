"""SQL source: incremental reads from a department database.

Reads in bounded batches by keyset pagination on ``(cursor column, key column)``
— never OFFSET — so memory stays flat and a resumed read starts exactly after
the last committed row. The cursor is an opaque string ``<cursor value>|<key>``
that the caller stores as the source's watermark *after* the batch is in the
hub store.

Must not import Airflow; connection settings are handed in as a typed spec.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import MetaData, Table, and_, create_engine, or_, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import NoSuchTableError, OperationalError, ProgrammingError

from connectors.errors import SourceRejected, SourceUnavailable
from connectors.source import SourceBatch, SourceRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SqlSourceSpec:
    """Where and how to read one table of a department database."""

    name: str
    """Source id, used in every message (``<department>.<source>``)."""
    url: str
    """SQLAlchemy URL of the department database (secret parts come from the environment)."""
    table: str
    """Table (or view) to read."""
    key_column: str
    """Unique, stable row key; tie-breaker of the cursor."""
    cursor_column: str
    """Monotonic column of last change (e.g. an update timestamp)."""
    batch_size: int = 200
    start: str | None = None
    """First run only: read rows whose cursor column is at or after this value."""


class SqlSource:
    """Incremental reader of one table. ``read(cursor)`` yields batches."""

    def __init__(self, spec: SqlSourceSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self._engine = create_engine(spec.url, future=True)

    def _table(self) -> Table:
        try:
            return Table(self.spec.table, MetaData(), autoload_with=self._engine)
        except NoSuchTableError as exc:
            raise SourceUnavailable(
                f"source {self.spec.name}: table {self.spec.table!r} not found in "
                f"{_safe(self.spec.url)}; check the source spec or seed the department database"
            ) from exc
        except OperationalError as exc:
            raise SourceUnavailable(
                f"source {self.spec.name}: database {_safe(self.spec.url)} is unreachable "
                f"({exc.orig}); check the connection and that the department system is up"
            ) from exc

    def read(self, cursor: str | None) -> Iterator[SourceBatch]:
        """Yield batches of rows changed after ``cursor`` (all rows when None)."""
        table = self._table()
        try:
            cur_col = table.c[self.spec.cursor_column]
            key_col = table.c[self.spec.key_column]
        except KeyError as exc:
            raise SourceRejected(
                f"source {self.spec.name}: table {self.spec.table!r} has no column {exc}; "
                "check key and cursor.field in the source spec"
            ) from None
        last_cur, last_key = _split(cursor)
        first = last_cur is None and self.spec.start is not None
        while True:
            stmt = select(table).order_by(cur_col, key_col).limit(self.spec.batch_size)
            if first:
                stmt = stmt.where(cur_col >= self.spec.start)
                first = False
            elif last_cur is not None:
                stmt = stmt.where(
                    or_(cur_col > last_cur, and_(cur_col == last_cur, key_col > last_key))
                )
            try:
                with self._engine.connect() as conn:
                    rows = [dict(r._mapping) for r in conn.execute(stmt)]
            except (OperationalError, ProgrammingError) as exc:
                raise SourceUnavailable(
                    f"source {self.spec.name}: read failed on {_safe(self.spec.url)} ({exc.orig})"
                ) from exc
            if not rows:
                return
            last = rows[-1]
            last_cur = last[self.spec.cursor_column]
            last_key = last[self.spec.key_column]
            log.info("source %s: read %d rows up to key %s", self.spec.name, len(rows), last_key)
            yield SourceBatch(
                [
                    SourceRecord(
                        str(r[self.spec.key_column]),
                        str(r[self.spec.cursor_column]),
                        {k: _jsonable(v) for k, v in r.items()},
                    )
                    for r in rows
                ],
                cursor=f"{last_cur}|{last_key}",
            )
            if len(rows) < self.spec.batch_size:
                return

    def commit(self, batch: SourceBatch) -> None:
        """Nothing to do: the stored watermark is the whole state of a SQL read."""

    def lookup(self, table: str, key: str, value: str, keys: list[str]) -> dict[str, Any]:
        """``{key: value}`` from another table of the same database, for ``keys``."""
        if not keys:
            return {}
        try:
            t = Table(table, MetaData(), autoload_with=self._engine)
            stmt = select(t.c[key], t.c[value]).where(t.c[key].in_(keys))
            with self._engine.connect() as conn:
                return {str(k): v for k, v in conn.execute(stmt)}
        except (NoSuchTableError, KeyError) as exc:
            raise SourceRejected(
                f"source {self.spec.name}: lookup table {table!r} or its columns "
                f"{key!r}/{value!r} not found ({exc}); check the mapping's lookup"
            ) from exc
        except (OperationalError, ProgrammingError) as exc:
            raise SourceUnavailable(
                f"source {self.spec.name}: lookup in {table!r} failed ({exc.orig})"
            ) from exc

    def close(self) -> None:
        self._engine.dispose()


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def _split(cursor: str | None) -> tuple[Any, Any]:
    if not cursor:
        return None, None
    value, _, key = cursor.rpartition("|")
    return value, int(key) if key.isdigit() else key


def _safe(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)
