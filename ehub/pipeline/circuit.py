"""Circuit breaker per destination, kept in the hub store so every worker shares it.

``closed`` — sends go through; each failed send (the platform unreachable,
5xx, 429, a lost receipt) counts, a successful one resets the count. At
``threshold`` consecutive failures the circuit opens: for ``cooldown`` seconds
no worker sends to that destination (a run stops at once with
:class:`CircuitOpen`, a :class:`DestinationUnavailable`, so Airflow retries it
later), which spares a struggling platform the retries of every worker. After
the cool-down one probe batch is let through (``half_open``): success closes
the circuit, failure opens it again for another cool-down.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ehub.audit import Event, append
from ehub.errors import DestinationUnavailable
from ehub.store.db import Store, utcnow
from ehub.store.models import CircuitRow

log = logging.getLogger(__name__)

THRESHOLD = 5
COOLDOWN_S = 60.0


class CircuitOpen(DestinationUnavailable):
    """The destination's circuit is open: nothing is sent until ``until``."""

    def __init__(self, destination: str, until: datetime, why: str | None) -> None:
        super().__init__(
            f"{destination} platform: circuit open until {until.isoformat(timespec='seconds')} "
            f"after repeated failures (last: {why or 'unknown'}); pending deliveries stay in "
            "the outbox and are sent, with the same idempotency keys, once it closes"
        )
        self.destination = destination
        self.until = until


@dataclass(frozen=True, slots=True)
class CircuitState:
    destination: str
    state: str
    failures: int
    opened_at: datetime | None
    last_error: str | None


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


class Circuit:
    """The breaker of one destination."""

    def __init__(
        self,
        store: Store,
        destination: str,
        *,
        threshold: int = THRESHOLD,
        cooldown: float = COOLDOWN_S,
    ) -> None:
        self.store = store
        self.destination = destination
        self.threshold = threshold
        self.cooldown = timedelta(seconds=cooldown)

    def _row(self, s: object) -> CircuitRow:
        from sqlalchemy.orm import Session

        assert isinstance(s, Session)
        row = s.get(CircuitRow, self.destination, with_for_update=True)
        if row is None:
            row = CircuitRow(destination=self.destination, state="closed", failures=0,
                             updated_at=utcnow())  # fmt: skip
            s.add(row)
        return row

    def state(self) -> CircuitState:
        with self.store.session() as s:
            row = s.get(CircuitRow, self.destination)
            if row is None:
                return CircuitState(self.destination, "closed", 0, None, None)
            return CircuitState(row.destination, row.state, row.failures,
                                _aware(row.opened_at), row.last_error)  # fmt: skip

    def before_send(self) -> None:
        """Raise :class:`CircuitOpen` while the circuit is open; after the cool-down,
        let one probe through (``half_open``)."""
        with self.store.session() as s:
            row = self._row(s)
            if row.state == "closed":
                return
            opened = _aware(row.opened_at) or utcnow()
            if utcnow() < opened + self.cooldown:
                raise CircuitOpen(self.destination, opened + self.cooldown, row.last_error)
            if row.state == "open":
                row.state, row.updated_at = "half_open", utcnow()
                log.warning("%s: circuit half-open, sending one probe batch", self.destination)

    def success(self) -> None:
        with self.store.session() as s:
            row = self._row(s)
            if row.state == "closed" and row.failures == 0:
                return
            was = row.state
            row.state, row.failures, row.opened_at, row.updated_at = "closed", 0, None, utcnow()
            if was != "closed":
                append(s, [Event("circuit_closed", self.destination, None, {"was": was})])
                log.warning("%s: circuit closed", self.destination)

    def failure(self, exc: BaseException) -> None:
        why = f"{type(exc).__name__}: {exc}"[:1000]
        with self.store.session() as s:
            row = self._row(s)
            row.failures += 1
            row.last_error, row.updated_at = why, utcnow()
            if row.state == "half_open" or (
                row.state == "closed" and row.failures >= self.threshold
            ):
                row.state, row.opened_at = "open", utcnow()
                append(s, [Event("circuit_opened", self.destination, None,
                                 {"failures": row.failures, "error": why[:300]})])  # fmt: skip
                log.error("%s: circuit opened after %d consecutive failures (%s)",
                          self.destination, row.failures, why)  # fmt: skip

    def reset(self) -> None:
        """Close the circuit by hand (``ehub deliveries circuit --reset``)."""
        with self.store.session() as s:
            row = self._row(s)
            row.state, row.failures, row.opened_at, row.updated_at = "closed", 0, None, utcnow()
