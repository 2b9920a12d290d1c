"""Engine, sessions and migrations of the hub store.

Must not contain business logic: the pipeline stages own that. Connection
failures are translated into :class:`~ehub.errors.StoreUnavailable` naming the
database (never its password).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from ehub.errors import StoreError, StoreUnavailable

log = logging.getLogger(__name__)
# SQLAlchemy logs every statement's parameters at INFO and result rows at DEBUG once
# the root logger allows it (``ehub -v``, a debugging session): record contents, names
# and ID numbers included. The hub's own log lines say what a statement did.
logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)

MIGRATIONS = Path(__file__).with_name("migrations")


def utcnow() -> datetime:
    """Wall-clock time for bookkeeping columns only (never for business logic)."""
    return datetime.now(UTC)


def safe_url(url: str) -> str:
    """The URL with any password hidden, for messages and logs."""
    return make_url(url).render_as_string(hide_password=True)


class Store:
    """The hub store at one URL."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        parsed = make_url(url)
        kwargs: dict[str, Any] = {"echo": echo, "future": True}
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs["pool_pre_ping"] = True
        self.engine: Engine = create_engine(url, **kwargs)
        if parsed.get_backend_name() == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed on success, rolled back on any error."""
        try:
            with self._sessions.begin() as session:
                yield session
        except OperationalError as exc:
            if _is_connect_error(exc):
                raise StoreUnavailable(
                    f"hub store {safe_url(self.url)} is unreachable: {exc.orig}. "
                    "Check EHUB_DATABASE_URL and that the database server is running."
                ) from exc
            raise StoreError(f"hub store {safe_url(self.url)}: {exc.orig}") from exc

    def migrate(self, revision: str = "head") -> None:
        """Bring the schema to ``revision`` with Alembic (idempotent)."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["engine"] = self.engine
        try:
            command.upgrade(cfg, revision)
        except OperationalError as exc:
            raise StoreUnavailable(
                f"cannot migrate hub store {safe_url(self.url)}: {exc.orig}. "
                "Check EHUB_DATABASE_URL and that the database server is running."
            ) from exc

    def dispose(self) -> None:
        self.engine.dispose()


def insert_ignore(
    session: Session, table: Any, rows: Sequence[dict[str, Any]], keys: Iterable[str]
) -> None:
    """Bulk ``INSERT … ON CONFLICT (keys) DO NOTHING`` on SQLite and PostgreSQL."""
    if not rows:
        return
    name = session.get_bind().dialect.name
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    elif name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as dialect_insert  # type: ignore[assignment]
    else:  # pragma: no cover - other databases are not supported targets
        session.execute(insert(table), list(rows))
        return
    stmt = dialect_insert(table).on_conflict_do_nothing(index_elements=list(keys))
    session.execute(stmt, list(rows))


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _is_connect_error(exc: OperationalError) -> bool:
    text = str(exc.orig).lower()
    return any(
        s in text
        for s in ("connection refused", "could not connect", "unable to open", "does not exist")
    )
