"""Migration 0009 (the feed outbox's partial indexes) on a store holding feed rows, on
SQLite and PostgreSQL: rows are kept through the upgrade and the downgrade, and on
each side of it a re-routed row is ignored while the other kind's row with the same
topic goes in."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import inspect, text

from ehub.store.db import MIGRATIONS, Store, insert_ignore
from ehub.store.models import FeedMessageRow

NOW = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    st = Store(store_url)
    yield st
    st.dispose()


def _alembic(store: Store) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = store.engine
    return cfg


def _seed(store: Store) -> None:
    with store.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO sources (id, department, kind, record_kind, created_at) "
            "VALUES ('src', 'd', 'sql', 'license', :at)"), {"at": NOW})  # fmt: skip
        conn.execute(text(
            "INSERT INTO licenses (id, identifier, version, type_code, issuer_code, "
            "holder_division, county, status, content_hash, document, source_id, source_key, "
            "state, created_at) VALUES (7, 'L7', 1, 't', 'i', '370602', '370602', 'valid', "
            ":h, '{}', 'src', 'k', 'sealed', :at)"), {"h": "0" * 64, "at": NOW})  # fmt: skip
        conn.execute(text(
            "INSERT INTO case_records (id, case_number, version, division, content_hash, "
            "document, source_id, source_key, created_at) VALUES (7, 'C7', 1, '370602', :h, "
            "'{}', 'src', 'k', :at)"), {"h": "0" * 64, "at": NOW})  # fmt: skip
        for n, (kind, state) in enumerate([("license", "published"), ("license", "pending"),
                                            ("case", "sending"), ("case", "withheld")]):  # fmt: skip
            conn.execute(text(
                f"INSERT INTO feed_messages (kind, {kind}_id, office, topic, message_key, "
                "message_id, state, created_at) VALUES (:kind, 7, 'o', :topic, 'k', :mid, "
                ":state, :at)"),
                {"kind": kind, "topic": f"t{n}", "mid": f"m{n}", "state": state, "at": NOW})  # fmt: skip


def _rows(store: Store) -> list[tuple[Any, ...]]:
    with store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT kind, license_id, case_id, topic, message_id, state FROM feed_messages "
            "ORDER BY message_id"))]  # fmt: skip


def _indexes(store: Store) -> set[str]:
    with store.engine.connect() as conn:
        found = inspect(conn)
        names = {i["name"] for i in found.get_indexes("feed_messages")}
        names |= {u["name"] for u in found.get_unique_constraints("feed_messages")}
        return {n for n in names if n}


def _route_again(store: Store, where: str | None) -> None:
    """Every seeded row routed again (ignored), and the license row's topic for the case."""
    rows = [{"kind": "license", "license_id": 7, "office": "o", "topic": "t0",
             "message_key": "k", "message_id": "again-l", "state": "pending", "created_at": NOW},
            {"kind": "case", "case_id": 7, "office": "o", "topic": "t2",
             "message_key": "k", "message_id": "again-c", "state": "pending", "created_at": NOW},
            {"kind": "case", "case_id": 7, "office": "o", "topic": "t0",
             "message_key": "k", "message_id": "new-c", "state": "pending", "created_at": NOW}]  # fmt: skip
    with store.session() as s:
        for r in rows:
            kind = r["kind"]
            insert_ignore(s, FeedMessageRow.__table__, [r], [f"{kind}_id", "topic"],
                          where=None if where is None else f"{kind}_id IS NOT NULL")  # fmt: skip


def test_rows_survive_the_upgrade_and_the_downgrade(store: Store) -> None:
    store.migrate("0008")
    _seed(store)
    before = _rows(store)
    assert "ix_feed_messages_state_id" in _indexes(store)

    store.migrate()
    assert _rows(store) == before
    assert {"uq_feed_messages_license_id", "uq_feed_messages_case_id",
            "uq_feed_messages_returned_id", "ix_feed_messages_unpublished"} <= _indexes(store)  # fmt: skip
    assert not {"ix_feed_messages_state_id", "ix_feed_messages_office",
                "uq_feed_messages_message_id"} & _indexes(store)  # fmt: skip
    _route_again(store, "partial")
    after = _rows(store)
    assert [r for r in after if r not in before] == [("case", None, 7, "t0", "new-c", "pending")]

    command.downgrade(_alembic(store), "0008")
    assert _rows(store) == after
    assert {"ix_feed_messages_state_id", "ix_feed_messages_office",
            "uq_feed_messages_message_id"} <= _indexes(store)  # fmt: skip
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM feed_messages WHERE message_id = 'new-c'"))
    _route_again(store, None)  # the full unique constraints of 0008
    assert len(_rows(store)) == len(after)
    store.migrate()
    assert len(_rows(store)) == len(after)
