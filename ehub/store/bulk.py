"""Bulk writes and JSON reads of the hub store: the pipeline stages' hot paths.

``INSERT … ON CONFLICT (keys) DO NOTHING`` of a batch of rows, optionally
returning columns of the rows inserted (a row already there returns nothing):

- PostgreSQL: one statement over the batch as one JSON text
  (``INSERT … SELECT … FROM json_to_recordset(…)``), in row order. SQLAlchemy's
  multi-row ``VALUES`` renders thousands of placeholders that the driver parses
  again for every batch.
- SQLite: one ``executemany`` of tuples converted by the columns' own bind
  processors, as SQLAlchemy would convert them, without its per-row parameter
  machinery (with ``RETURNING``: SQLAlchemy's own multi-row insert).

A table with a Python-side column default missing from the rows takes
SQLAlchemy's generic path, which applies it. Must not contain business logic.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import msgspec
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Integer,
    String,
    Text,
    cast,
    insert,
    text,
)
from sqlalchemy.orm import Session

#: Below this many rows the generic statement is as fast, and simpler to read in logs.
BULK_MIN_ROWS = 20


def insert_ignore(
    session: Session,
    table: Any,
    rows: Sequence[dict[str, Any]],
    keys: Iterable[str],
    *,
    where: str | None = None,
) -> None:
    """Bulk ``INSERT … ON CONFLICT (keys) DO NOTHING`` on SQLite and PostgreSQL (every
    row with the same columns). ``where``: the predicate of the unique index on
    ``keys`` when it is partial (SQL text, as in the index)."""
    if not rows:
        return
    target = _Target(list(keys), where)
    dialect = session.get_bind().dialect.name
    if len(rows) >= BULK_MIN_ROWS and _bulk_ok(table, rows):
        if dialect == "postgresql":
            _recordset(session, table, rows, target, ())
            return
        if dialect == "sqlite":
            _executemany(session, table, rows, target)
            return
    _generic(session, table, rows, target, ())


def insert_ignore_returning(
    session: Session,
    table: Any,
    rows: Sequence[dict[str, Any]],
    keys: Iterable[str],
    returning: Sequence[Any],
) -> list[tuple[Any, ...]]:
    """:func:`insert_ignore` that returns the ``returning`` columns of the rows it
    inserted (a row already there returns nothing): no read-back of the new rows."""
    if not rows:
        return []
    target = _Target(list(keys), None)
    if session.get_bind().dialect.name == "postgresql" and _bulk_ok(table, rows):
        return _recordset(session, table, rows, target, returning)
    return _generic(session, table, rows, target, returning)


def bound(column: Any, value: Any, dialect: Any) -> Any:
    """``value`` as ``column``'s type binds it on ``dialect`` (for driver statements:
    a time as SQLite's text, for one)."""
    process = column.type.dialect_impl(dialect).bind_processor(dialect)
    return value if process is None else process(value)


def json_text(column: Any) -> Any:
    """A JSON column read as its text (decode it with :func:`loads_json`): the JSON
    type's own decoding costs ``json.loads`` per row."""
    return cast(column, Text)


def loads_json(text: str | bytes | None) -> Any:
    """``json.loads(text)`` by msgspec (the same values, several times faster); what
    msgspec refuses (``NaN``, ``1e400``, a lone surrogate escape) goes to ``json.loads``."""
    if text is None:
        return None
    try:
        return _DECODE(text)
    except msgspec.MsgspecError:
        return json.loads(text)


_DECODE = msgspec.json.Decoder().decode


class _Target(NamedTuple):
    """A conflict target: the columns of a unique index, and its predicate if partial."""

    keys: list[str]
    where: str | None

    def sql(self, quote: Callable[[str], str]) -> str:
        cols = f"ON CONFLICT ({', '.join(quote(k) for k in self.keys)})"
        return cols if self.where is None else f"{cols} WHERE {self.where}"


def _insert_ignoring(session: Session, table: Any, target: _Target) -> Any:
    name = session.get_bind().dialect.name
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    elif name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as dialect_insert  # type: ignore[assignment]
    else:  # pragma: no cover - other databases are not supported targets
        return insert(table)
    return dialect_insert(table).on_conflict_do_nothing(
        index_elements=target.keys,
        index_where=None if target.where is None else text(target.where),
    )


def _bulk_ok(table: Any, rows: Sequence[dict[str, Any]]) -> bool:
    """Every row has the same columns, and no Python-side default is left to apply."""
    first = rows[0].keys()
    if any(r.keys() != first for r in rows):
        return False
    return all(c.default is None for c in table.columns if c.name not in first)


def _executemany(
    session: Session, table: Any, rows: Sequence[dict[str, Any]], target: _Target
) -> None:
    conn = session.connection()
    dialect = conn.dialect
    quote = dialect.identifier_preparer.quote
    names = list(rows[0])
    procs = [table.c[n].type.dialect_impl(dialect).bind_processor(dialect) for n in names]
    sql = (
        f"INSERT INTO {quote(table.name)} ({', '.join(quote(n) for n in names)}) "
        f"VALUES ({', '.join('?' * len(names))}) {target.sql(quote)} DO NOTHING"
    )
    if all(p is None for p in procs):
        data = [tuple(r.values()) for r in rows]
    else:
        data = [
            tuple(v if p is None else p(v) for v, p in zip(r.values(), procs, strict=True))
            for r in rows
        ]
    conn.exec_driver_sql(sql, data)


_SQL_TYPES = (
    (BigInteger, "bigint"),
    (Integer, "integer"),
    (Boolean, "boolean"),
    (String, "text"),  # Text too; the column's length limit still applies on insert
)


def _recordset(
    session: Session,
    table: Any,
    rows: Sequence[dict[str, Any]],
    target: _Target,
    returning: Sequence[Any],
) -> list[tuple[Any, ...]]:
    """One ``INSERT … SELECT … FROM json_to_recordset(:rows)`` (PostgreSQL): the batch
    travels as one JSON text, encoded by msgspec, and the database splits and types it.

    Arrays of parameters would do too, but the driver dumps arrays of strings in
    Python, escaping element by element: slower than the statement itself. A JSON
    column's value is embedded as its serializer writes it (``json.dumps``, as the
    JSON type stores it); a ``None`` there takes the generic path (the JSON type
    stores ``null``, the record set would give SQL NULL)."""

    dialect = session.get_bind().dialect
    quote = dialect.identifier_preparer.quote
    names = list(rows[0])
    kinds: list[str] = []
    convert: list[Any] = []
    for name in names:
        impl = table.c[name].type.dialect_impl(dialect)
        if isinstance(impl, JSON):
            if any(r[name] is None for r in rows):
                return _generic(session, table, rows, target, returning)
            serialize = dialect._json_serializer or json.dumps  # type: ignore[attr-defined]
            kinds.append("json")
            convert.append(lambda v, dump=serialize: msgspec.Raw(str(dump(v)).encode()))
        elif isinstance(impl, DateTime):
            kinds.append("timestamptz" if impl.timezone else "timestamp")
            convert.append(_isoformat)
        else:
            kind = next((k for cls, k in _SQL_TYPES if isinstance(impl, cls)), "")
            if not kind:  # pragma: no cover - a column type without a mapping
                return _generic(session, table, rows, target, returning)
            kinds.append(kind)
            convert.append(None)
    fields = [f"c{i}" for i in range(len(names))]
    batch = [
        {f: (v if c is None else c(v)) for f, v, c in zip(fields, r.values(), convert, strict=True)}
        for r in rows
    ]
    typed = ", ".join(f"{f} {k}" for f, k in zip(fields, kinds, strict=True))
    sql = (
        f"INSERT INTO {quote(table.name)} ({', '.join(quote(n) for n in names)}) "
        f"SELECT {', '.join('t.' + f for f in fields)} "
        f"FROM ROWS FROM (json_to_recordset(CAST(:rows AS json)) AS ({typed})) "
        f"WITH ORDINALITY AS t({', '.join(fields)}, n) ORDER BY t.n "
        f"{target.sql(quote)} DO NOTHING"
    )
    params = {"rows": _ENCODE(batch).decode()}
    if returning:
        sql += " RETURNING " + ", ".join(quote(c.name) for c in returning)
        return [tuple(r) for r in session.execute(text(sql), params)]
    session.execute(text(sql), params)
    return []


def _isoformat(value: Any) -> Any:
    return value.isoformat() if value is not None else None


_ENCODE = msgspec.json.Encoder().encode


def _generic(
    session: Session,
    table: Any,
    rows: Sequence[dict[str, Any]],
    target: _Target,
    returning: Sequence[Any],
) -> list[tuple[Any, ...]]:
    stmt = _insert_ignoring(session, table, target)
    if returning:
        return [tuple(r) for r in session.execute(stmt.returning(*returning), list(rows))]
    session.execute(stmt, list(rows))
    return []
