"""Publish stage: pending return-feed outbox rows → the broker.

Exactly-once per record version and topic: a batch is first marked
``sending`` (committed), then published and acknowledged, then marked
``published`` with its partition and offset. If the process dies in between,
the next run finds ``sending`` rows, scans their topics for the message ids
already there, marks those published and sends only the rest.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime

from sqlalchemy import select, update

from connectors.kafka_feed import FeedMessage, FeedPublisher, scan_ids
from ehub.audit import Event, append
from ehub.config import Settings
from ehub.errors import BrokerUnavailable
from ehub.masking import mask_license_document
from ehub.pipeline import StageResult
from ehub.pipeline.faults import crash_point
from ehub.store.db import Store, utcnow
from ehub.store.models import FeedMessageRow, LicenseRow

log = logging.getLogger(__name__)

ENVELOPE_SCHEMA = "ehub.return.license/1"


def envelope(
    identifier: str,
    version: int,
    status: str,
    division: str,
    doc: dict[str, object],
    message_id: str,
) -> bytes:
    body = {
        "schema": ENVELOPE_SCHEMA,
        "message_id": message_id,
        "kind": "license",
        "identifier": identifier,
        "version": version,
        "operation": "revoke" if status in ("revoked", "cancelled") else "upsert",
        "division": division,
        "produced_at": datetime.now(UTC).isoformat(),
        "payload": mask_license_document(doc),
    }
    return json.dumps(body, ensure_ascii=False, sort_keys=True).encode()


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
    publisher = FeedPublisher(broker)
    batches = published = failures = 0
    try:
        while True:
            with store.session() as s:
                todo = list(
                    s.execute(
                        select(
                            FeedMessageRow.id,
                            FeedMessageRow.topic,
                            FeedMessageRow.message_key,
                            FeedMessageRow.message_id,
                            LicenseRow.identifier,
                            LicenseRow.version,
                            LicenseRow.status,
                            LicenseRow.holder_division,
                            LicenseRow.document,
                        )
                        .join(LicenseRow, LicenseRow.id == FeedMessageRow.license_id)
                        .where(FeedMessageRow.state == "pending")
                        .order_by(FeedMessageRow.id)
                        .limit(settings.batch_size)
                    )
                )
                if not todo:
                    break
                s.execute(
                    update(FeedMessageRow)
                    .where(FeedMessageRow.id.in_([t[0] for t in todo]))
                    .values(state="sending")
                )
            batches += 1
            crash_point(settings.fault, "publish", batches, "before")
            msgs = [
                FeedMessage(topic, key, mid, envelope(ident, ver, status, div, doc, mid))
                for _id, topic, key, mid, ident, ver, status, div, doc in todo
            ]
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
            with store.session() as s:
                for row_id, _topic, _key, mid, _ident, _ver, *_ in todo:
                    row = s.get(FeedMessageRow, row_id)
                    assert row is not None
                    row.state, row.partition, row.offset = (
                        "published",
                        acks[mid].partition,
                        acks[mid].offset,
                    )
                    row.published_at = utcnow()
                append(s, [Event("returned", t[4], t[5], {"topic": t[1]}) for t in todo])
            published += len(todo)
            crash_point(settings.fault, "publish", batches)
    finally:
        publisher.close()
    log.info(
        "publish: %d batches, %d messages published, %d recovered", batches, published, recovered
    )
    return StageResult("publish", batches, {"published": published, "recovered": recovered})
