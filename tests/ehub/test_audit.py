from __future__ import annotations

from pathlib import Path

from sqlalchemy import select, update

from ehub.audit import Event, append, verify_chain
from ehub.store.db import Store
from ehub.store.models import AuditEvent


def _store(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'a.db'}")
    store.migrate()
    with store.session() as s:
        append(s, [Event("extracted", "src", None, {"n": 1}), Event("normalized", "ID1", 1)])
    with store.session() as s:
        append(s, [Event("sealed", "ID1", 1, {"level": "B-B"})])
    return store


def test_intact_chain_verifies(tmp_path: Path) -> None:
    store = _store(tmp_path)
    with store.session() as s:
        assert verify_chain(s) == []
        assert len(list(s.scalars(select(AuditEvent)))) == 3


def test_altered_row_is_detected(tmp_path: Path) -> None:
    store = _store(tmp_path)
    with store.session() as s:
        s.execute(update(AuditEvent).where(AuditEvent.id == 2).values(subject="ID2"))
    with store.session() as s:
        problems = verify_chain(s)
    assert problems and "row 2" in problems[0]


def test_deleted_row_is_detected(tmp_path: Path) -> None:
    store = _store(tmp_path)
    with store.session() as s:
        s.delete(s.get(AuditEvent, 2))
    with store.session() as s:
        assert any("row 3" in p for p in verify_chain(s))
