"""SQL source: keyset pagination, resumption from a cursor, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from connectors.errors import SourceUnavailable
from connectors.sql import SqlSource, SqlSourceSpec


def _db(tmp_path: Path, n: int) -> str:
    url = f"sqlite:///{tmp_path / 'dept.db'}"
    eng = create_engine(url)
    with eng.begin() as c:
        c.execute(text("CREATE TABLE T (ID INTEGER PRIMARY KEY, GXSJ TEXT, NAME TEXT)"))
        # several rows share a timestamp: the key breaks the tie
        c.execute(
            text("INSERT INTO T VALUES (:i, :t, :n)"),
            [
                {"i": i, "t": f"2026-01-01 00:00:{i // 3:02d}", "n": f"r{i}"}
                for i in range(1, n + 1)
            ],
        )
    eng.dispose()
    return url


def _spec(url: str, size: int = 4) -> SqlSourceSpec:
    return SqlSourceSpec("dept.t", url, "T", "ID", "GXSJ", batch_size=size)


def test_reads_every_row_once_in_bounded_batches(tmp_path: Path) -> None:
    src = SqlSource(_spec(_db(tmp_path, 10)))
    batches = list(src.read(None))
    assert [len(b.records) for b in batches] == [4, 4, 2]
    assert [r.payload["ID"] for b in batches for r in b.records] == list(range(1, 11))


def test_resumes_after_the_cursor_of_a_committed_batch(tmp_path: Path) -> None:
    url = _db(tmp_path, 10)
    first = next(SqlSource(_spec(url)).read(None))
    rest = [r.payload["ID"] for b in SqlSource(_spec(url)).read(first.cursor) for r in b.records]
    assert rest == list(range(5, 11))


def test_missing_table_names_source_and_table(tmp_path: Path) -> None:
    url = _db(tmp_path, 1)
    src = SqlSource(SqlSourceSpec("dept.t", url, "NOPE", "ID", "GXSJ"))
    with pytest.raises(SourceUnavailable, match=r"dept\.t.*'NOPE'"):
        list(src.read(None))


def test_unreachable_database_is_transient_and_named() -> None:
    src = SqlSource(
        SqlSourceSpec(
            "dept.pg",
            "postgresql+psycopg://u:pw@127.0.0.1:1/x?connect_timeout=2",
            "T",
            "ID",
            "GXSJ",
        )
    )
    with pytest.raises(SourceUnavailable) as err:
        list(src.read(None))
    assert "dept.pg" in str(err.value) and "pw" not in str(err.value)
