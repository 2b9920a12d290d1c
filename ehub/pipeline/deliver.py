"""Deliver stage: pending outbox rows of one destination → platform receipts.

Batches of at most ``MAX_BATCH`` items, each with its stable idempotency key.
A transient failure (unreachable, 5xx, 429, lost or malformed receipt) is
retried with exponential backoff and jitter, honouring Retry-After; after
``attempts`` tries the stage counts one failed attempt on each row of the batch
and raises :class:`DestinationUnavailable`, so Airflow retries the task later —
with the same keys, hence never a double insert. A row that has failed
``dead_after`` times becomes a dead letter (``state='dead'``, the last error
kept): it is no longer sent until an operator re-drives it
(``ehub deliveries retry``), with the same key.
Per-record rejections are terminal: the row is marked rejected with the
platform's code and message.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import random
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from connectors.platform import OutboundLicense, PlatformUnavailable, ProvincialClient, Receipt
from ehub.audit import Event, append
from ehub.config import Settings
from ehub.errors import DestinationUnavailable, StoreError
from ehub.pipeline import StageResult
from ehub.pipeline.faults import crash_point
from ehub.store.db import Store, utcnow
from ehub.store.models import DeliveryRow, LicenseRow, SealRow, SignatureRow

log = logging.getLogger(__name__)

MAX_BATCH = 100
#: Failed attempts (each a run's full retry sequence) before a row becomes a dead letter.
DEAD_AFTER = 8


def _send_with_retry(
    client: ProvincialClient, items: list[OutboundLicense], *, attempts: int, base_delay: float
) -> list[Receipt]:
    for attempt in range(1, attempts + 1):
        try:
            return client.send_licenses(items)
        except PlatformUnavailable as exc:
            if attempt == attempts:
                raise DestinationUnavailable(
                    f"provincial platform still failing after {attempts} attempts: {exc}. "
                    "Pending deliveries stay in the outbox and are re-sent with the same "
                    "idempotency keys on the next run."
                ) from exc
            delay = (
                exc.retry_after if exc.retry_after is not None else base_delay * 2 ** (attempt - 1)
            )
            delay = min(delay, 30.0) * (1 + random.random() * 0.2)
            log.warning(
                "provincial: attempt %d failed (%s); retrying in %.2fs", attempt, exc, delay
            )
            time.sleep(delay)
    raise AssertionError("unreachable")


def run(
    settings: Settings,
    store: Store,
    *,
    client: ProvincialClient | None = None,
    attempts: int = 5,
    base_delay: float = 0.5,
    dead_after: int = DEAD_AFTER,
) -> StageResult:
    destination = "provincial"
    own_client = client is None
    if client is None:
        client = ProvincialClient(settings.require("provincial_url"), settings.provincial_token)
    size = min(settings.batch_size, MAX_BATCH)
    batches = delivered = rejected = duplicates = retry_later = 0
    last_id = 0
    try:
        while True:
            with store.session() as s:
                todo = list(
                    s.execute(
                        select(
                            DeliveryRow.id,
                            DeliveryRow.idempotency_key,
                            LicenseRow.identifier,
                            LicenseRow.version,
                            LicenseRow.document,
                            SignatureRow.path,
                            SignatureRow.sha256,
                            SignatureRow.signed_at,
                            SealRow.department,
                            SealRow.name,
                        )
                        .join(LicenseRow, LicenseRow.id == DeliveryRow.license_id)
                        .join(
                            SignatureRow,
                            (SignatureRow.license_id == LicenseRow.id)
                            & (SignatureRow.format == "pades"),
                        )
                        .join(SealRow, SealRow.id == SignatureRow.seal_id)
                        .where(
                            DeliveryRow.destination == destination,
                            DeliveryRow.state == "pending",
                            DeliveryRow.id > last_id,
                        )
                        .order_by(DeliveryRow.id)
                        .limit(size)
                    )
                )
            if not todo:
                break
            batches += 1
            last_id = todo[-1][0]
            items = []
            for _did, key, ident, ver, doc, path, sha, signed_at, sealer, seal_name in todo:
                data = Path(path).read_bytes()
                if hashlib.sha256(data).hexdigest() != sha:
                    raise StoreError(
                        f"sealed document of {ident} v{ver} at {path} does not match its recorded "
                        "hash; re-seal it before delivery"
                    )
                lic = dict(doc)
                lic["QZ"] = [{"ZZQZR": sealer, "ZZQZSJ": _iso_utc(signed_at), "ZZQZMC": seal_name}]
                items.append(OutboundLicense(key, lic, base64.b64encode(data).decode(), sha))
            try:
                receipts = _send_with_retry(client, items, attempts=attempts, base_delay=base_delay)
            except DestinationUnavailable as exc:
                _count_failure(store, destination, [row[0] for row in todo], exc, dead_after)
                raise
            crash_point(settings.fault, "deliver", batches, "before")
            by_key = {r.idempotency_key: r for r in receipts}
            events = []
            with store.session() as s:
                for did, key, ident, ver, *_ in todo:
                    r = by_key[key]
                    row = s.get(DeliveryRow, did)
                    assert row is not None
                    row.attempts += 1
                    if r.transient:  # not processed: stays in the outbox, same key
                        row.last_error = f"{r.error_code or 'TRANSIENT'}: {r.message or ''}"[:1000]
                        retry_later += 1
                        if row.attempts >= dead_after:
                            row.state = "dead"
                            events.append(Event("dead_letter", ident, ver,
                                                {"destination": destination,
                                                 "attempts": row.attempts}))  # fmt: skip
                        continue
                    row.receipt = r.raw
                    if r.accepted:
                        row.state, row.receipt_id, row.delivered_at = (
                            "delivered",
                            r.receipt_id,
                            utcnow(),
                        )
                        delivered += 1
                        duplicates += r.duplicate
                        events.append(
                            Event(
                                "delivered",
                                ident,
                                ver,
                                {"destination": destination, "receipt": r.receipt_id},
                            )
                        )
                    else:
                        row.state = "rejected"
                        row.last_error = f"{r.error_code}: {r.message}"
                        rejected += 1
                        events.append(
                            Event(
                                "rejected_by_platform",
                                ident,
                                ver,
                                {"destination": destination, "code": r.error_code},
                            )
                        )
                append(s, events)
            crash_point(settings.fault, "deliver", batches)
    finally:
        if own_client:
            client.close()
    log.info(
        "deliver %s: %d batches, %d delivered (%d already held), %d rejected",
        destination,
        batches,
        delivered,
        duplicates,
        rejected,
    )
    return StageResult(
        "deliver",
        batches,
        {"delivered": delivered, "rejected": rejected, "duplicates": duplicates,
         "retry_later": retry_later},
    )  # fmt: skip


def _count_failure(
    store: Store, destination: str, ids: list[int], exc: Exception, dead_after: int
) -> None:
    """One failed attempt on each row of a batch; rows out of attempts become dead letters."""
    why = f"{type(exc).__name__}: {exc}"[:1000]
    with store.session() as s:
        events = []
        rows = s.execute(
            select(DeliveryRow, LicenseRow.identifier, LicenseRow.version)
            .join(LicenseRow, LicenseRow.id == DeliveryRow.license_id)
            .where(DeliveryRow.id.in_(ids))
        ).all()
        for row, ident, ver in rows:
            row.attempts += 1
            row.last_error = why
            if row.attempts >= dead_after:
                row.state = "dead"
                events.append(Event("dead_letter", ident, ver,
                                    {"destination": destination, "attempts": row.attempts}))  # fmt: skip
        append(s, events)
    if events:
        log.error("deliver %s: %d deliveries are dead letters after %d failed attempts; "
                  "see `ehub deliveries dead-letters`", destination, len(events), dead_after)  # fmt: skip


def _iso_utc(value: datetime) -> str:
    """ISO-8601 in UTC (SQLite returns naive datetimes for UTC columns)."""
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
