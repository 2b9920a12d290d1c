"""The delivery outbox as operators see it: status, dead letters, re-driving.

Re-driving sets rows back to ``pending`` with their attempts cleared; they keep
their idempotency keys, so a platform that did receive an earlier send answers
with the original receipt instead of inserting twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, func, select, update

from ehub.audit import Event, append
from ehub.store.db import Store
from ehub.store.models import DeliveryRow

REDRIVABLE = ("dead", "rejected")


@dataclass(frozen=True, slots=True)
class StateCount:
    destination: str
    kind: str
    state: str
    count: int
    oldest: datetime | None
    """Creation time of the oldest row in this state."""


@dataclass(frozen=True, slots=True)
class Letter:
    id: int
    destination: str
    kind: str
    identifier: str
    version: int
    state: str
    attempts: int
    last_error: str | None
    created_at: datetime


def status(store: Store) -> list[StateCount]:
    with store.session() as s:
        rows = s.execute(
            select(DeliveryRow.destination, DeliveryRow.kind, DeliveryRow.state, func.count(),
                   func.min(DeliveryRow.created_at))
            .group_by(DeliveryRow.destination, DeliveryRow.kind, DeliveryRow.state)
            .order_by(DeliveryRow.destination, DeliveryRow.kind, DeliveryRow.state)
        ).all()  # fmt: skip
    return [StateCount(d, k, st, int(n), oldest) for d, k, st, n, oldest in rows]


def letters(
    store: Store, *, state: str = "dead", destination: str | None = None, limit: int = 100
) -> list[Letter]:
    """Rows in ``state`` (dead letters by default, or rejected ones), oldest first."""
    stmt = (
        select(DeliveryRow.id, DeliveryRow.destination, DeliveryRow.kind, DeliveryRow.subject,
               DeliveryRow.version, DeliveryRow.state, DeliveryRow.attempts,
               DeliveryRow.last_error, DeliveryRow.created_at)
        .where(DeliveryRow.state == state)
        .order_by(DeliveryRow.id)
        .limit(limit)
    )  # fmt: skip
    if destination:
        stmt = stmt.where(DeliveryRow.destination == destination)
    with store.session() as s:
        return [Letter(*r) for r in s.execute(stmt)]


def redrive(
    store: Store,
    *,
    state: str = "dead",
    destination: str | None = None,
    ids: Sequence[int] = (),
    actor: str = "",
) -> int:
    """Put rows in ``state`` (all, or only ``ids``) back in the outbox; how many."""
    if state not in REDRIVABLE:
        raise ValueError(f"only {' or '.join(REDRIVABLE)} deliveries are re-driven, not {state}")
    cond: list[Any] = [DeliveryRow.state == state]
    if destination:
        cond.append(DeliveryRow.destination == destination)
    if ids:
        cond.append(DeliveryRow.id.in_(list(ids)))
    with store.session() as s:
        n = cast(CursorResult[Any], s.execute(
            update(DeliveryRow).where(*cond).values(state="pending", attempts=0)
        )).rowcount  # fmt: skip
        if n:
            append(s, [Event("deliveries_redriven", destination or "*", None,
                             {"state": state, "count": n, "ids": list(ids)[:100],
                              "actor": actor})])  # fmt: skip
    return int(n)
