"""Deliver stage: pending outbox rows of one destination → platform receipts.

A run sends, kind by kind (:data:`ehub.pipeline.delivery_items.CHANNELS`),
batches of pending rows, each item with its stable idempotency key. A transient
failure (unreachable, 5xx, 429, lost or malformed receipt) is retried with
exponential backoff and jitter, honouring Retry-After; after ``attempts`` tries
the stage counts one failed attempt on each row of the batch and raises
:class:`DestinationUnavailable`, so Airflow retries the task later — with the
same keys, hence never a double insert. Every failed send also counts against
the destination's circuit breaker (:mod:`ehub.pipeline.circuit`): once open, no
worker sends there until its cool-down has passed. A row that has failed
``dead_after`` times becomes a dead letter (``state='dead'``, the last error
kept): it is no longer sent until an operator re-drives it
(``ehub deliveries retry``), with the same key.
Per-record rejections are terminal: the row is marked rejected with the
platform's code and message (the department's rejects report lists them).

One batch is in flight at a time, sent by a helper thread: while the platform
checks it, the stage records the receipts of the batch before and builds the
next one, so the hub's work and the platform's overlap. Receipts are recorded
in batch order and only once acknowledged.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, cast

import httpx
from sqlalchemy import Table, bindparam, func, select, update

from connectors.platform import (
    NationalClient,
    PlatformUnavailable,
    ProvincialClient,
    Receipt,
    encode_batch,
)
from ehub.audit import Event, append
from ehub.config import Settings
from ehub.errors import ConfigError, DestinationUnavailable
from ehub.pipeline import StageResult
from ehub.pipeline.circuit import Circuit
from ehub.pipeline.delivery_items import CHANNELS, Channel, Pending
from ehub.pipeline.faults import crash_point
from ehub.store.db import Store, insert_ignore, utcnow
from ehub.store.models import CaseRow, DeliveryRow, LicenseRow, QuarantineRow, SealRow

log = logging.getLogger(__name__)

PLATFORM_ZH = {"provincial": "省级电子证照平台", "national": "全国一体化平台"}

#: Failed attempts (each a run's full retry sequence) before a row becomes a dead letter.
DEAD_AFTER = 8


class BatchClient(Protocol):
    destination: str

    def send(self, endpoint: str, items: Sequence[dict[str, Any]]) -> list[Receipt]: ...

    def close(self) -> None: ...


#: The simulators' default tokens (the settings fall back to them for the dev stack).
DEV_TOKENS = frozenset({"dev-provincial-token", "dev-national-token"})
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def _no_dev_token_abroad(url: str, token: str, destination: str) -> None:
    """A hub whose platform token is unset would send the dev simulator's token: refuse
    that for any platform that is not on loopback (or a ``.test`` name in tests)."""
    host = httpx.URL(url).host
    if token in DEV_TOKENS and host not in _LOOPBACK and not host.endswith(".test"):
        raise ConfigError(
            f"EHUB_{destination.upper()}_TOKEN is not set: the dev simulator's token is sent "
            f"only to a platform on loopback, not to {host}"
        )


def client_for(settings: Settings, destination: str) -> ProvincialClient:
    """The HTTP client of a destination, from the settings."""
    if destination in ("provincial", "national"):
        url = settings.require(f"{destination}_url")
        _no_dev_token_abroad(url, getattr(settings, f"{destination}_token"), destination)
    if destination == "provincial":
        return ProvincialClient(
            settings.require("provincial_url"), settings.provincial_token,
            tls=settings.platform_tls(),
        )  # fmt: skip
    if destination == "national":
        return NationalClient(
            settings.require("national_url"), settings.national_token,
            tls=settings.platform_tls(),
        )  # fmt: skip
    raise ConfigError(f"unknown destination {destination!r}; known: {', '.join(CHANNELS)}")


def _send_with_retry(
    client: BatchClient,
    circuit: Circuit,
    endpoint: str,
    items: list[dict[str, Any]],
    *,
    attempts: int,
    base_delay: float,
) -> list[Receipt]:
    for attempt in range(1, attempts + 1):
        circuit.before_send()  # raises CircuitOpen while the destination is known to be down
        try:
            receipts = client.send(endpoint, items)
        except PlatformUnavailable as exc:
            circuit.failure(exc)
            if attempt == attempts:
                raise DestinationUnavailable(
                    f"{client.destination} platform still failing after {attempts} attempts: "
                    f"{exc}. Pending deliveries stay in the outbox and are re-sent with the "
                    "same idempotency keys on the next run."
                ) from exc
            delay = (
                exc.retry_after if exc.retry_after is not None else base_delay * 2 ** (attempt - 1)
            )
            delay = min(delay, 30.0) * (1 + random.random() * 0.2)
            log.warning(
                "%s: attempt %d failed (%s); retrying in %.2fs",
                client.destination,
                attempt,
                exc,
                delay,
            )
            time.sleep(delay)
        else:
            circuit.success()
            return receipts
    raise AssertionError("unreachable")


class _Counts:
    def __init__(self) -> None:
        self.batches = self.delivered = self.rejected = self.duplicates = self.retry_later = 0
        self.by_kind: dict[str, int] = {}

    def as_dict(self) -> dict[str, int]:
        return {"delivered": self.delivered, "rejected": self.rejected,
                "duplicates": self.duplicates, "retry_later": self.retry_later,
                **{f"delivered_{k}": n for k, n in self.by_kind.items()}}  # fmt: skip


def run(
    settings: Settings,
    store: Store,
    *,
    destination: str = "provincial",
    client: BatchClient | None = None,
    attempts: int = 5,
    base_delay: float = 0.5,
    dead_after: int = DEAD_AFTER,
    circuit: Circuit | None = None,
    kinds: Sequence[str] | None = None,
) -> StageResult:
    """Send every pending outbox row of ``destination`` (only ``kinds`` if given)."""
    own_client = client is None
    if client is None:
        client = client_for(settings, destination)
    circuit = circuit or Circuit(store, destination)
    counts = _Counts()
    try:
        for channel in CHANNELS[destination]:
            if kinds is None or channel.kind in kinds:
                _deliver_channel(settings, store, client, circuit, channel, counts,
                                 attempts=attempts, base_delay=base_delay,
                                 dead_after=dead_after)  # fmt: skip
    finally:
        if own_client:
            client.close()
    if counts.batches:
        log.info("deliver %s: %d batches, %d delivered (%d already held), %d rejected",
                 destination, counts.batches, counts.delivered, counts.duplicates,
                 counts.rejected)  # fmt: skip
    return StageResult("deliver", counts.batches, counts.as_dict())


def run_national(settings: Settings, store: Store) -> StageResult:
    return run(settings, store, destination="national")


def _pending(store: Store, destination: str, kind: str, after: int, limit: int) -> list[Pending]:
    with store.session() as s:
        rows = s.execute(
            select(DeliveryRow.id, DeliveryRow.kind,
                   func.coalesce(DeliveryRow.license_id, DeliveryRow.case_id, DeliveryRow.seal_id),
                   DeliveryRow.subject, DeliveryRow.version, DeliveryRow.idempotency_key)
            .where(DeliveryRow.destination == destination, DeliveryRow.kind == kind,
                   DeliveryRow.state == "pending", DeliveryRow.id > after)
            .order_by(DeliveryRow.id)
            .limit(limit)
        ).all()  # fmt: skip
    return [Pending(*r) for r in rows]


def _deliver_channel(
    settings: Settings,
    store: Store,
    client: BatchClient,
    circuit: Circuit,
    channel: Channel,
    counts: _Counts,
    *,
    attempts: int,
    base_delay: float,
    dead_after: int,
) -> None:
    """Send the channel's pending rows batch by batch, one batch in flight at a time.

    While the platform checks batch *n*, this thread records the receipts of batch
    *n - 1* and builds batch *n + 1* (a sender thread waits for the answers): the
    hub's work and the platform's overlap instead of taking turns. Receipts are
    still recorded only once acknowledged, batch after batch, with the same keys; a
    batch that fails is counted as failed after the one before it is recorded."""
    destination = client.destination
    size = min(settings.batch_size, channel.max_batch)
    last_id = 0

    def send(items: list[dict[str, Any]]) -> list[Receipt]:
        return _send_with_retry(client, circuit, channel.endpoint, items,
                                attempts=attempts, base_delay=base_delay)  # fmt: skip

    def next_batch() -> tuple[list[Pending], list[dict[str, Any]]]:
        nonlocal last_id
        todo = _pending(store, destination, channel.kind, last_id, size)
        if not todo:
            return [], []
        last_id = todo[-1].id
        with store.session() as s:
            items = channel.build(s, todo)
        return todo, encode_batch(items)  # here, not in the sender thread

    with ThreadPoolExecutor(1, thread_name_prefix=f"deliver-{destination}") as sender:
        todo, items = next_batch()
        if not todo:
            return
        counts.batches += 1
        number, in_flight = counts.batches, sender.submit(send, items)
        while True:
            todo_next, items_next = next_batch()  # while the platform checks the batch sent
            try:
                receipts = in_flight.result()
            except DestinationUnavailable as exc:
                _count_failure(store, destination, todo, exc, dead_after)
                raise
            if todo_next:
                counts.batches += 1
                next_number, in_flight = counts.batches, sender.submit(send, items_next)
            crash_point(settings.fault, "deliver", number, "before")
            _record(store, destination, channel.kind, todo, receipts, counts, dead_after)
            crash_point(settings.fault, "deliver", number)
            if not todo_next:
                return
            todo, number = todo_next, next_number


def _record(
    store: Store,
    destination: str,
    kind: str,
    todo: Sequence[Pending],
    receipts: Sequence[Receipt],
    counts: _Counts,
    dead_after: int,
) -> None:
    """Store the receipts of one batch: delivered, rejected, or still pending (transient).

    One read of the batch's rows and one bulk update by primary key (not a
    statement per row): the receipts of a 500-item batch are stored in
    milliseconds."""
    by_key = {r.idempotency_key: r for r in receipts}
    events = []
    refused: list[tuple[Pending, Receipt]] = []
    what = {"destination": destination, "kind": kind}
    now = utcnow()
    with store.session() as s:
        # Attempts are counted in SQL (attempts + 1); only a row the platform asked to
        # re-send needs its count here, to decide whether it becomes a dead letter.
        again = [p.id for p in todo if by_key[p.idempotency_key].transient]
        attempts = dict(
            s.execute(
                select(DeliveryRow.id, DeliveryRow.attempts).where(DeliveryRow.id.in_(again))
            ).all()
        ) if again else {}  # fmt: skip
        delivered: list[dict[str, Any]] = []
        changes: list[dict[str, Any]] = []
        for p in todo:
            r = by_key[p.idempotency_key]
            if r.transient:  # not processed: stays in the outbox, same key
                n = int(attempts[p.id]) + 1
                counts.retry_later += 1
                dead = n >= dead_after
                changes.append({"_id": p.id, "state": "dead" if dead else "pending",
                                "last_error": f"{r.error_code or 'TRANSIENT'}: "
                                              f"{r.message or ''}"[:1000]})  # fmt: skip
                if dead:
                    events.append(Event("dead_letter", p.subject, p.version,
                                        {**what, "attempts": n}))  # fmt: skip
            elif r.accepted:
                delivered.append({"_id": p.id, "receipt": r.raw, "receipt_id": r.receipt_id})
                counts.delivered += 1
                counts.by_kind[kind] = counts.by_kind.get(kind, 0) + 1
                counts.duplicates += r.duplicate
                events.append(Event("delivered", p.subject, p.version,
                                    {**what, "receipt": r.receipt_id}))  # fmt: skip
                if kind == "seal" and r.raw.get("registration_no"):
                    _record_registration(s, p.record_id, str(r.raw["registration_no"]), events)
            else:
                changes.append({"_id": p.id, "state": "rejected", "receipt": r.raw,
                                "last_error": f"{r.error_code}: {r.message}"})  # fmt: skip
                counts.rejected += 1
                refused.append((p, r))
                events.append(Event("rejected_by_platform", p.subject, p.version,
                                    {**what, "code": r.error_code}))  # fmt: skip
        if delivered:
            s.execute(_DELIVERED.values(delivered_at=now), delivered)
        for group in _same_columns(changes):
            s.execute(_update_by_id([c for c in group[0] if c != "_id"]), group)
        _to_rejects_report(s, destination, refused)
        append(s, events)


_TABLE = cast(Table, DeliveryRow.__table__)


def _update_by_id(columns: Sequence[str]) -> Any:
    """``UPDATE deliveries SET attempts = attempts + 1, <columns> WHERE id = :_id`` for an
    executemany of rows (Core: no ORM bookkeeping per row)."""
    return (
        update(_TABLE)
        .where(_TABLE.c.id == bindparam("_id"))
        .values(attempts=_TABLE.c.attempts + 1, **{c: bindparam(c) for c in columns})
    )


_DELIVERED = _update_by_id(["receipt", "receipt_id"]).values(state="delivered")


def _same_columns(changes: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Group row changes by the set of columns they set (one executemany per group)."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for c in changes:
        groups.setdefault(tuple(sorted(c)), []).append(c)
    return list(groups.values())


def _to_rejects_report(
    s: Any, destination: str, refused: Sequence[tuple[Pending, Receipt]]
) -> None:
    """Platform rejections of ingested records go to quarantine (``E_PLATFORM_REJECTED``,
    the platform's code as the field, its reason as the message), so they reach the
    department's rejects report; a corrected version from the source resolves them."""
    rows = []
    for p, r in refused:
        model = {"license": LicenseRow, "case": CaseRow}.get(p.kind)
        rec = s.get(model, p.record_id) if model is not None else None
        if rec is None or rec.raw_id is None:
            continue  # a seal registration, or a record made at the hub: not a source's defect
        code, reason = r.error_code or "REJECTED", (r.message or "")[:900]
        rows.append({
            "raw_id": rec.raw_id, "source_id": rec.source_id, "source_key": rec.source_key,
            "reason_code": "E_PLATFORM_REJECTED", "field": f"{destination}:{code}"[:80],
            "message_zh": f"{PLATFORM_ZH.get(destination, destination)}退回（{code}）：{reason}",
            "message_en": f"rejected by the {destination} platform ({code}): {reason}",
            "value": None, "payload": rec.document, "state": "open", "created_at": utcnow(),
        })  # fmt: skip
    insert_ignore(s, QuarantineRow.__table__, rows, ["raw_id", "reason_code", "field"])


def _record_registration(s: Any, seal_id: int, registration_no: str, events: list[Event]) -> None:
    """The national platform accepted a seal's registration: keep its number (备案号)."""
    seal = s.get(SealRow, seal_id)
    if seal is not None and seal.registration_no != registration_no:
        seal.registration_no, seal.registered_at = registration_no, utcnow()
        events.append(Event("seal_registration", seal.code, None,
                            {"registration_no": registration_no}))  # fmt: skip


def _count_failure(
    store: Store, destination: str, todo: Sequence[Pending], exc: Exception, dead_after: int
) -> None:
    """One failed attempt on each row of a batch; rows out of attempts become dead letters."""
    why = f"{type(exc).__name__}: {exc}"[:1000]
    by_id = {p.id: p for p in todo}
    with store.session() as s:
        events = []
        for row in s.scalars(select(DeliveryRow).where(DeliveryRow.id.in_(list(by_id)))):
            row.attempts += 1
            row.last_error = why
            if row.attempts >= dead_after:
                row.state = "dead"
                events.append(Event("dead_letter", row.subject, row.version,
                                    {"destination": destination, "kind": row.kind,
                                     "attempts": row.attempts}))  # fmt: skip
        append(s, events)
    if events:
        log.error("deliver %s: %d deliveries are dead letters after %d failed attempts; "
                  "see `ehub deliveries dead-letters`", destination, len(events), dead_after)  # fmt: skip
