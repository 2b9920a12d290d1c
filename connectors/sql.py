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
from typing import Any

from sqlalchemy import MetaData, Table, and_, create_engine, or_, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import NoSuchTableError, OperationalError, ProgrammingError

from connectors.errors import SourceUnavailable

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


@dataclass(frozen=True)
class Batch:
    """Rows read in one round trip and the cursor just after the last of them."""

    rows: list[dict[str, Any]]
    cursor: str


class SqlSource:
    """Incremental reader of one table. ``read(cursor)`` yields batches."""

    def __init__(self, spec: SqlSourceSpec) -> None:
        self.spec = spec
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

    def read(self, cursor: str | None) -> Iterator[Batch]:
        """Yield batches of rows changed after ``cursor`` (all rows when None)."""
        table = self._table()
        cur_col = table.c[self.spec.cursor_column]
        key_col = table.c[self.spec.key_column]
        last_cur, last_key = _split(cursor)
        while True:
            stmt = select(table).order_by(cur_col, key_col).limit(self.spec.batch_size)
            if last_cur is not None:
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
            yield Batch(rows=rows, cursor=f"{last_cur}|{last_key}")
            if len(rows) < self.spec.batch_size:
                return

    def close(self) -> None:
        self._engine.dispose()


def _split(cursor: str | None) -> tuple[Any, Any]:
    if not cursor:
        return None, None
    value, _, key = cursor.rpartition("|")
    return value, int(key) if key.isdigit() else key


def _safe(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)
