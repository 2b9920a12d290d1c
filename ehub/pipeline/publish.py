"""Publish stage: pending return-feed outbox rows → the broker.

Exactly-once per record version and topic: a batch is first marked
``sending`` (committed), then published and acknowledged, then marked
``published`` with its partition and offset. If the process dies in between,
the next run finds ``sending`` rows, scans their topics for the message ids
already there, marks those published and sends only the rest.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import literal, select, union_all, update

from connectors.kafka_feed import FeedMessage, FeedPublisher, scan_ids
from ehub.audit import Event, append
from ehub.config import Settings
from ehub.errors import BrokerUnavailable
from ehub.feeds import FeedSigner, envelope
from ehub.offices import Office, RecordKind, list_offices
from ehub.pipeline import StageResult
from ehub.pipeline.faults import crash_point
from ehub.routing import division_of, view_for
from ehub.store.db import Store, utcnow
from ehub.store.models import CaseRow, FeedMessageRow, LicenseRow

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Todo:
    id: int
    kind: RecordKind
    office: str
    topic: str
    message_key: str
    message_id: str
    identifier: str
    version: int
    status: str | None
    document: dict[str, Any]


def _pending(s: Any, limit: int) -> list[_Todo]:
    """The next pending feed messages with their records (licenses and case records)."""
    base = (FeedMessageRow.id, FeedMessageRow.kind, FeedMessageRow.office, FeedMessageRow.topic,
            FeedMessageRow.message_key, FeedMessageRow.message_id)  # fmt: skip
    lic = (
        select(*base, LicenseRow.identifier, LicenseRow.version, LicenseRow.status,
               LicenseRow.document)
        .join(LicenseRow, LicenseRow.id == FeedMessageRow.license_id)
    )  # fmt: skip
    case = (
        select(*base, CaseRow.case_number, CaseRow.version, literal(None), CaseRow.document)
        .join(CaseRow, CaseRow.id == FeedMessageRow.case_id)
    )  # fmt: skip
    both = union_all(
        lic.where(FeedMessageRow.state == "pending"),
        case.where(FeedMessageRow.state == "pending"),
    ).subquery()
    rows = s.execute(select(both).order_by(both.c[0]).limit(limit)).all()
    return [_Todo(*r) for r in rows]


def _withhold(store: Store, rows: list[_Todo]) -> None:
    with store.session() as s:
        s.execute(update(FeedMessageRow).where(FeedMessageRow.id.in_([t.id for t in rows]))
                  .values(state="withheld"))  # fmt: skip
        append(s, [Event("return_withheld", t.identifier, t.version,
                         {"office": t.office, "reason": "office revoked"}) for t in rows])  # fmt: skip


def _message(t: _Todo, offices: dict[str, Office], signer: FeedSigner) -> FeedMessage:
    """The office's view of the record in a signed envelope. An office revoked since
    the row was written still gets nothing beyond what it was granted then: its
    registry entry (fields, masking) is what shapes the view."""
    office = offices[t.office]
    body = envelope(
        kind=t.kind, identifier=t.identifier, version=t.version, status=t.status,
        division=division_of(t.kind, t.document), office=t.office,
        payload=view_for(office, t.kind, t.document), message_id=t.message_id, signer=signer,
    )  # fmt: skip
    return FeedMessage(t.topic, t.message_key, t.message_id, body)


def recover(settings: Settings, store: Store) -> int:
    """Resolve rows left ``sending`` by a crash; returns how many were already on the broker."""
    with store.session() as s:
        stuck = list(
            s.execute(
                select(FeedMessageRow.id, FeedMessageRow.topic, FeedMessageRow.message_id).where(
                    FeedMessageRow.state == "sending"
                )
            )
        )
    if not stuck:
        return 0
    found = scan_ids(settings.require("broker"), {t for _, t, _ in stuck})
    done = 0
    with store.session() as s:
        for row_id, _topic, mid in stuck:
            row = s.get(FeedMessageRow, row_id)
            assert row is not None
            if mid in found:
                row.state, row.partition, row.offset = (
                    "published",
                    found[mid].partition,
                    found[mid].offset,
                )
                row.published_at = utcnow()
                done += 1
            else:
                row.state = "pending"
    log.warning(
        "publish: recovered %d in-flight messages (%d already on the broker)", len(stuck), done
    )
    return done


def run(settings: Settings, store: Store, *, attempts: int = 4) -> StageResult:
    broker = settings.require("broker")
    recovered = recover(settings, store)
    offices = {o.code: o for o in list_offices(store)}
    signer = FeedSigner.dev(settings.home)
    publisher = FeedPublisher(broker)
    batches = published = failures = 0
    try:
        while True:
            with store.session() as s:
                todo = _pending(s, settings.batch_size)
                if not todo:
                    break
                s.execute(
                    update(FeedMessageRow)
                    .where(FeedMessageRow.id.in_([t.id for t in todo]))
                    .values(state="sending")
                )
            batches += 1
            crash_point(settings.fault, "publish", batches, "before")
            withheld = [t for t in todo if not offices[t.office].active]
            if withheld:  # revoked since the rows were written: nothing more reaches it
                _withhold(store, withheld)
                todo = [t for t in todo if offices[t.office].active]
            msgs = [_message(t, offices, signer) for t in todo]
            try:
                acks = {p.message_id: p for p in publisher.publish(msgs)}
            except BrokerUnavailable:
                failures += 1
                if failures >= attempts:
                    raise
                # Part of the batch may have reached the broker: settle it by a scan.
                publisher.close()
                time.sleep(min(0.5 * 2**failures, 10.0))
                recovered += recover(settings, store)
                publisher = FeedPublisher(broker)
                continue
            crash_point(settings.fault, "publish", batches, "acked")
            now = utcnow()
            with store.session() as s:
                s.execute(update(FeedMessageRow), [
                    {"id": t.id, "state": "published", "partition": acks[t.message_id].partition,
                     "offset": acks[t.message_id].offset, "published_at": now}
                    for t in todo
                ])  # fmt: skip
                append(s, [Event("returned", t.identifier, t.version,
                                 {"kind": t.kind, "office": t.office, "topic": t.topic})
                           for t in todo])  # fmt: skip
            published += len(todo)
            crash_point(settings.fault, "publish", batches)
    finally:
        publisher.close()
    log.info(
        "publish: %d batches, %d messages published, %d recovered", batches, published, recovered
    )
    return StageResult("publish", batches, {"published": published, "recovered": recovered})
