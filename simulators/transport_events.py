"""The transport department (交通运输厅) simulator: license events on a Kafka topic.

The department publishes one JSON event per change of a road transport business
permit (道路运输经营许可证), keyed by the license identifier ``zzbs`` so a
license's events stay in order on one partition::

    {"eventId": "0b6c…" (UUID, the record key), "eventType": "ISSUED",
     "occurredAt": "2024-01-01T08:00:02+08:00", "license": {…}}

``license`` is described in :mod:`simulators.transport_data`. A license's
history: ``ISSUED`` (bbh 1, zt 10), sometimes ``CHANGED`` (next bbh, new
address ``dz``), sometimes a final ``REVOKED`` (zt 20), ``CANCELLED`` (30) or
``SUSPENDED`` (40). Histories of different licenses interleave; at most
:data:`MAX_ACTIVE` are open at once, so memory stays flat for any count.

``count`` is the number of events; a planned share carries exactly one defect
(:data:`DEFECT_KINDS`). ``E_VERSION_CONFLICT`` re-sends the latest clean
version of a license (same zzbs and bbh) with another address and a validity
end one year later; ``E_STATUS_TRANSITION`` follows a clean REVOKED/CANCELLED
event with the next bbh, zt ``10`` and a new address (eventType
``REINSTATED``). Each clean (zzbs, bbh) appears once. A relational defect
planned before any target exists waits for the next clean slot (dropped if
none comes); the report counts what was emitted. The report's keys are event
ids. Malformed messages are kept out of the mix: :func:`publish_garbage`.

kafka-python producer, ``acks="all"``, no idempotence (the embedded tansu
broker mishandles idempotent producers), one request in flight (order).
Never imports the hub.
"""

from __future__ import annotations

import json
import logging
import random
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from simulators import defect_kit as kit
from simulators import transport_data as lic_data

log = logging.getLogger(__name__)

DEFECT_KINDS: tuple[str, ...] = (
    "E_LICENSE_ID_CHECK",
    "E_USCC_CHECK",
    "E_DATE_INVALID",
    "E_VALIDITY_WINDOW",
    "E_CODE_UNKNOWN",
    "E_REQUIRED_MISSING",
    "E_DIVISION_UNKNOWN",
    "E_ENCODING",
    "E_VERSION_CONFLICT",
    "E_STATUS_TRANSITION",
)
RELATIONAL = ("E_VERSION_CONFLICT", "E_STATUS_TRANSITION")
EVENT_TYPES = ("ISSUED", "CHANGED", "REVOKED", "CANCELLED", "SUSPENDED", "REINSTATED")
MAX_ACTIVE = 64
_MAX_TARGETS = 256
_BASE = datetime(2024, 1, 1, 8, 0, 0)


@dataclass
class _Open:
    """A license whose history is not over yet."""

    lic: dict[str, Any]
    steps: list[str]
    addresses: set[str] = field(default_factory=set)


@dataclass
class _Target:
    """The latest clean version of a license, available for one relational defect."""

    event_type: str
    lic: dict[str, Any]
    addresses: set[str]


class EventStream:
    """Iterate to get the events; :meth:`report` afterwards says what to quarantine."""

    def __init__(self, count: int, *, seed: int = 0, defect_rate: float = 0.05) -> None:
        self.count, self.seed = count, seed
        self._plan = kit.plan_defects(count, defect_rate, seed, DEFECT_KINDS)
        self._keyed: list[tuple[str, str]] = []
        self._done = False

    def report(self) -> kit.GeneratorReport:
        if not self._done:
            raise RuntimeError("iterate over the whole stream before asking for its report")
        return kit.make_report(self.count, DEFECT_KINDS, self._keyed)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self._done:
            raise RuntimeError("an EventStream can be iterated once")
        rng = random.Random(f"transport-schedule:{self.seed}")
        open_: OrderedDict[int, _Open] = OrderedDict()
        # Latest clean version per license serial, for conflicts / for transitions.
        conflicts: OrderedDict[int, _Target] = OrderedDict()
        ended: OrderedDict[int, _Target] = OrderedDict()
        deferred: list[str] = []
        serial = 0

        for n in range(1, self.count + 1):
            erng = random.Random(f"transport-event:{self.seed}:{n}")
            event_id = str(uuid.UUID(int=erng.getrandbits(128), version=4))
            planned = self._plan.get(n)
            relational = [planned] if planned in RELATIONAL else []
            if planned is None and deferred:
                relational = deferred[:1]
            kind = relational[0] if relational else None
            pool = conflicts if kind == "E_VERSION_CONFLICT" else ended
            if kind is not None and pool:
                target_serial, target = pool.popitem(last=False)
                conflicts.pop(target_serial, None)
                ended.pop(target_serial, None)
                if kind == "E_VERSION_CONFLICT":
                    body = lic_data.conflicting(target.lic, erng)
                    event_type = target.event_type
                else:
                    body = lic_data.reinstated(target.lic, target.addresses, erng)
                    event_type = "REINSTATED"
                if planned is None:
                    deferred.pop(0)
                self._keyed.append((kind, event_id))
                yield self._event(event_id, event_type, n, body)
                continue
            if planned in RELATIONAL:  # no target yet: emit it later, keep this one clean
                deferred.append(planned)
                planned = None

            # A normal history event: open a license or advance an open one.
            if not open_ or (len(open_) < MAX_ACTIVE and rng.random() < 0.55):
                serial += 1
                lic, steps = lic_data.new_license(self.seed, serial)
                event_type, key, state = "ISSUED", serial, _Open(lic, steps, {lic["dz"]})
            else:
                key = rng.choice(tuple(open_))
                state = open_[key]
                event_type = state.steps.pop(0)
                state.lic = lic_data.advance(state.lic, event_type, erng)
                state.addresses.add(state.lic["dz"])
            if state.steps:
                open_[key] = state
            else:
                open_.pop(key, None)
            conflicts.pop(key, None)
            ended.pop(key, None)
            body = state.lic
            if planned is not None:
                body = lic_data.inject(state.lic, planned, erng)
                self._keyed.append((planned, event_id))
            else:
                target = _Target(event_type, state.lic, set(state.addresses))
                _remember(conflicts, key, target)
                if event_type in ("REVOKED", "CANCELLED"):
                    _remember(ended, key, target)
            yield self._event(event_id, event_type, n, body)
        if deferred:
            log.info("transport events: %d relational defects found no target", len(deferred))
        self._done = True

    @staticmethod
    def _event(event_id: str, event_type: str, n: int, lic: dict[str, Any]) -> dict[str, Any]:
        occurred = (_BASE + timedelta(seconds=2 * n)).strftime("%Y-%m-%dT%H:%M:%S+08:00")
        return {
            "eventId": event_id,
            "eventType": event_type,
            "occurredAt": occurred,
            "license": lic,
        }


def _remember(pool: OrderedDict[int, _Target], key: int, target: _Target) -> None:
    pool[key] = target
    if len(pool) > _MAX_TARGETS:
        pool.popitem(last=False)


def events(count: int, seed: int = 0, defect_rate: float = 0.05) -> Iterator[dict[str, Any]]:
    """The events :func:`publish` sends, in order, without a broker."""
    return iter(EventStream(count, seed=seed, defect_rate=defect_rate))


def report(count: int, seed: int = 0, defect_rate: float = 0.05) -> kit.GeneratorReport:
    """The report of those events (runs the stream; memory stays flat)."""
    stream = EventStream(count, seed=seed, defect_rate=defect_rate)
    for _ in stream:
        pass
    return stream.report()


def encode(event: dict[str, Any]) -> tuple[bytes, bytes]:
    """(message key, value) of an event: zzbs and UTF-8 JSON."""
    key = str(event["license"]["zzbs"]).encode()
    return key, json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _producer(bootstrap: str) -> Any:
    from kafka import KafkaProducer

    return KafkaProducer(
        bootstrap_servers=bootstrap,
        client_id="sim-transport-events",
        acks="all",
        enable_idempotence=False,
        max_in_flight_requests_per_connection=1,  # keep a license's events in order
        retries=5,
        linger_ms=20,
        batch_size=256 * 1024,
        request_timeout_ms=15000,
    )


def ensure_topic(bootstrap: str, topic: str, partitions: int = 3) -> bool:
    """Create ``topic`` with ``partitions`` unless it exists; True when created."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="sim-transport-admin")
    try:
        # Not list_topics(): its metadata parsing trips over the embedded broker's ACL bits.
        admin.create_topics([NewTopic(topic, partitions, 1)])
        return True
    except TopicAlreadyExistsError:
        return False
    finally:
        admin.close()


def publish(
    bootstrap: str,
    topic: str,
    count: int,
    seed: int = 0,
    defect_rate: float = 0.05,
    *,
    partitions: int = 3,
) -> kit.GeneratorReport:
    """Send ``count`` events to ``topic`` (created with ``partitions`` if missing).

    Waits for every acknowledgement; a failed send raises the producer's error.
    """
    ensure_topic(bootstrap, topic, partitions)
    stream = EventStream(count, seed=seed, defect_rate=defect_rate)
    producer = _producer(bootstrap)
    try:
        pending = []
        for event in stream:
            key, value = encode(event)
            headers = [("content-type", b"application/json; charset=utf-8")]
            pending.append(producer.send(topic, key=key, value=value, headers=headers))
            if len(pending) >= 10_000:
                producer.flush(timeout=60)
                for fut in pending:
                    fut.get(timeout=60)
                pending.clear()
        producer.flush(timeout=60)
        for fut in pending:
            fut.get(timeout=60)
    finally:
        producer.close(timeout=10)
    log.info("transport events: published %d events to %s at %s", count, topic, bootstrap)
    return stream.report()


GARBAGE: tuple[bytes, ...] = (
    b'{"eventId": "broken", "eventType": "ISSUED", "license": {',  # truncated JSON
    json.dumps(
        {"eventId": "gbk", "license": {"yhmc": "济南货运有限公司"}}, ensure_ascii=False
    ).encode("gbk"),  # declared UTF-8, sent as GBK
    b"not json at all",
    b"[1, 2, 3]",  # JSON, but not an event object
    b"",
)
"""Malformed message values, kept out of :func:`events`; the hub must fail them apart."""


def publish_garbage(bootstrap: str, topic: str, n: int = len(GARBAGE)) -> list[bytes]:
    """Send ``n`` malformed messages (cycling through :data:`GARBAGE`); returns their keys."""
    ensure_topic(bootstrap, topic)
    producer = _producer(bootstrap)
    keys = [f"garbage-{i}".encode() for i in range(n)]
    try:
        futures = [
            producer.send(topic, key=key, value=GARBAGE[i % len(GARBAGE)])
            for i, key in enumerate(keys)
        ]
        producer.flush(timeout=60)
        for fut in futures:
            fut.get(timeout=60)
    finally:
        producer.close(timeout=10)
    return keys
