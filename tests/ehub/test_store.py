"""The hub store on SQLite and PostgreSQL: migrations, idempotent upserts, errors."""

from __future__ import annotations

import pytest
from sqlalchemy import func, inspect, select

from ehub.errors import StoreUnavailable
from ehub.store.db import Store, insert_ignore, safe_url, utcnow
from ehub.store.models import RawRecord, Source

TABLES = {
    "sources",
    "watermarks",
    "raw_records",
    "licenses",
    "case_records",
    "quarantine",
    "seals",
    "signatures",
    "deliveries",
    "feed_messages",
    "audit_events",
    "alembic_version",
}


def test_migrate_creates_every_table_and_is_idempotent(store_url: str) -> None:
    store = Store(store_url)
    store.migrate()
    store.migrate()  # a second run is a no-op
    assert set(inspect(store.engine).get_table_names()) >= TABLES
    store.dispose()


def test_insert_ignore_keeps_one_row_per_natural_key(store_url: str) -> None:
    store = Store(store_url)
    store.migrate()
    with store.session() as s:
        insert_ignore(
            s,
            Source.__table__,
            [
                {
                    "id": "d.s",
                    "department": "d",
                    "kind": "sql",
                    "record_kind": "license",
                    "created_at": utcnow(),
                }
            ],
            ["id"],
        )
    row = {
        "source_id": "d.s",
        "source_key": "1",
        "source_version": "v1",
        "payload": {"a": "中文"},
        "payload_hash": "h" * 64,
        "state": "pending",
        "extracted_at": utcnow(),
    }
    for _ in range(3):
        with store.session() as s:
            insert_ignore(
                s,
                RawRecord.__table__,
                [row, {**row, "source_key": "2"}],
                ["source_id", "source_key", "payload_hash"],
            )
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(RawRecord)) == 2
        assert s.scalar(select(RawRecord.payload).where(RawRecord.source_key == "1")) == {
            "a": "中文"
        }
    store.dispose()


def test_failed_transaction_leaves_nothing_half_written(store_url: str) -> None:
    store = Store(store_url)
    store.migrate()
    with pytest.raises(RuntimeError), store.session() as s:
        s.add(
            Source(id="x.y", department="d", kind="sql", record_kind="license", created_at=utcnow())
        )
        s.flush()
        raise RuntimeError("crash mid-transaction")
    with store.session() as s:
        assert s.get(Source, "x.y") is None
    store.dispose()


def test_unreachable_postgres_names_the_database_not_the_password() -> None:
    store = Store("postgresql+psycopg://ehub:s3cret@127.0.0.1:1/hub?connect_timeout=2")
    with pytest.raises(StoreUnavailable) as err:
        store.migrate()
    assert "127.0.0.1:1/hub" in str(err.value)
    assert "s3cret" not in str(err.value)
    assert "s3cret" not in safe_url(store.url)


def test_migrations_create_exactly_the_models(store_url: str) -> None:
    """Alembic's autogenerate finds nothing to add: migrations and models agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from ehub.store.models import Base

    store = Store(store_url)
    try:
        store.migrate()
        with store.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        store.dispose()
    # SQLite reports a few type spellings differently; structure must match everywhere.
    structural = [d for d in diff if not (isinstance(d, list) and d and d[0][0] == "modify_type")]
    assert structural == []
