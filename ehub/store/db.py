"""Engine, sessions and migrations of the hub store.

Must not contain business logic: the pipeline stages own that. Connection
failures are translated into :class:`~ehub.errors.StoreUnavailable` naming the
database (never its password).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from ehub.errors import StoreError, StoreUnavailable
from ehub.store.bulk import (  # noqa: F401 - the stages import them from here
    insert_ignore,
    insert_ignore_returning,
    json_text,
    loads_json,
)

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
        """Bring the schema to ``revision`` with Alembic (idempotent).

        A store already at the head revision is left after one query: every stage
        calls this, and running Alembic's environment costs tens of milliseconds."""
        from alembic import command
        from alembic.config import Config

        if revision == "head" and self._at_head():
            return
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

    def _at_head(self) -> bool:
        """Whether the store's recorded revisions are the migration scripts' heads."""
        try:
            with self.engine.connect() as conn:
                current = {
                    r[0] for r in conn.exec_driver_sql("SELECT version_num FROM alembic_version")
                }
        except DBAPIError:  # no version table yet (a new store), or unreachable: migrate says
            return False
        return bool(current) and current == _heads()

    def dispose(self) -> None:
        self.engine.dispose()


@functools.cache
def _heads() -> frozenset[str]:
    """The head revisions of the migration scripts (read once per process)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return frozenset(ScriptDirectory.from_config(cfg).get_heads())


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
