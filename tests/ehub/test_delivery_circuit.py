"""The circuit breaker of a destination: it opens after consecutive failures, stops
every send while open, lets one probe through after the cool-down, and closes on
success or re-opens on failure. Case record deliveries through a scripted client."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from connectors.platform import PlatformUnavailable, Receipt
from ehub.config import Settings
from ehub.errors import DestinationUnavailable
from ehub.pipeline import deliver, outbox
from ehub.pipeline.circuit import Circuit, CircuitOpen
from ehub.store.db import Store, utcnow
from ehub.store.models import AuditEvent, CaseRow, DeliveryRow
from ehub.store.models import Source as SourceRow


class Scripted:
    """A platform client that fails while ``down`` and accepts everything otherwise."""

    destination = "provincial"

    def __init__(self) -> None:
        self.down = True
        self.calls: list[str] = []

    def send(self, endpoint: str, items: Sequence[dict[str, Any]]) -> list[Receipt]:
        self.calls.append(endpoint)
        if self.down:
            raise PlatformUnavailable("HTTP 503 (injected)")
        return [Receipt(i["idempotency_key"], True, f"R-{i['idempotency_key'][:8]}", None, None,
                        False, {"status": "accepted"}) for i in items]  # fmt: skip

    def close(self) -> None:
        pass


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[Settings, Store]]:
    settings = Settings.from_env(home=tmp_path, database_url=f"sqlite:///{tmp_path / 'hub.db'}")
    store = Store(settings.database_url)
    store.migrate()
    with store.session() as s:
        s.add(SourceRow(id="t.cases", department="t", kind="sql", record_kind="case",
                        created_at=utcnow()))  # fmt: skip
        s.flush()
        for n in range(5):
            s.add(CaseRow(case_number=f"BJ-{n}", version=1, division="370602", content_hash="h",
                          document={"BJBH": f"BJ-{n}"}, source_id="t.cases", source_key=str(n),
                          raw_id=None, created_at=utcnow()))  # fmt: skip
        s.flush()
        outbox.add_case_rows(s, [(f"BJ-{n}", 1) for n in range(5)])
    try:
        yield settings, store
    finally:
        store.dispose()


def _run(env: tuple[Settings, Store], client: Scripted, circuit: Circuit) -> Any:
    settings, store = env
    return deliver.run(settings, store, client=client, circuit=circuit, attempts=4,
                       base_delay=0.001)  # fmt: skip


def test_the_circuit_opens_stops_sending_and_closes_after_a_successful_probe(
    env: tuple[Settings, Store],
) -> None:
    _, store = env
    client = Scripted()
    circuit = Circuit(store, "provincial", threshold=3, cooldown=0.5)
    with pytest.raises(CircuitOpen, match="circuit open until"):
        _run(env, client, circuit)
    assert len(client.calls) == 3  # the 4th attempt was not made: the circuit had opened
    assert circuit.state().state == "open"

    with pytest.raises(CircuitOpen):  # every worker is held off during the cool-down
        _run(env, client, circuit)
    assert len(client.calls) == 3

    time.sleep(0.6)
    client.down = False
    result = _run(env, client, circuit)  # half-open: the probe batch goes through
    assert result.counts["delivered"] == 5 and result.counts["delivered_case"] == 5
    assert circuit.state().state == "closed" and circuit.state().failures == 0
    with store.session() as s:
        states = s.scalars(
            select(DeliveryRow.state).where(DeliveryRow.destination == "provincial")
        ).all()
        events = s.scalars(select(AuditEvent.event).where(AuditEvent.event.like("circuit_%"))).all()
    assert states == ["delivered"] * 5
    assert events == ["circuit_opened", "circuit_closed"]


def test_a_failed_probe_opens_the_circuit_again(env: tuple[Settings, Store]) -> None:
    _, store = env
    client = Scripted()
    circuit = Circuit(store, "provincial", threshold=2, cooldown=0.3)
    with pytest.raises(CircuitOpen):
        _run(env, client, circuit)
    time.sleep(0.35)
    with pytest.raises(CircuitOpen):
        _run(env, client, circuit)  # one probe, failed: open again at once
    assert len(client.calls) == 3
    state = circuit.state()
    assert state.state == "open" and "503" in (state.last_error or "")
    circuit.reset()
    assert circuit.state().state == "closed"


def test_failures_below_the_threshold_leave_the_circuit_closed(
    env: tuple[Settings, Store],
) -> None:
    _, store = env
    client = Scripted()
    circuit = Circuit(store, "provincial", threshold=10, cooldown=60)
    with pytest.raises(DestinationUnavailable, match="still failing after 4 attempts") as info:
        _run(env, client, circuit)
    assert not isinstance(info.value, CircuitOpen)
    assert circuit.state().state == "closed" and circuit.state().failures == 4
    client.down = False
    assert _run(env, client, circuit).counts["delivered"] == 5
    assert circuit.state().failures == 0
