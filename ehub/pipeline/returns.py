"""Return-interface intake: records the provincial platform hands back (属地返还).

The provincial platform's return interface (``GET /api/v1/return/{division}``)
lists every license and case version it holds for a division — the hub's own
deliveries and what other departments gave the platform. This stage reads it
page by page from a cursor kept per division prefix (``return_cursors``) and:

- skips the hub's own versions (already routed from the hub's store when they
  were sealed or normalized);
- keeps each other version once (``returned_records``, unique per platform, kind,
  identifier and version) and writes a feed outbox row for every office whose
  jurisdiction contains its division — the same routing, masking and publication
  as the hub's own records (:mod:`ehub.pipeline.publish` sends them);
- reports a version whose division cannot be routed (an ``unroutable`` event, the
  record kept without feed rows) and quarantines a malformed item under the
  source ``provincial.return`` (reason, field, the item as received), so nothing is
  lost silently and one bad item never blocks the page.

The cursor advances in the transaction that stores the page, after its effects:
a crash re-reads the page, and the unique keys make that a no-op.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import select, text, tuple_

from connectors.platform import ProvincialClient
from ehub.audit import Event, append
from ehub.config import Settings
from ehub.feeds import NOTIFY_CHANNEL, FeedRouter, message_id
from ehub.offices import RecordKind
from ehub.pipeline import StageResult
from ehub.pipeline.faults import crash_point
from ehub.routing import RoutingError, division_of, offices_for
from ehub.store.db import Store, insert_ignore, utcnow
from ehub.store.models import (
    CaseRow,
    FeedMessageRow,
    LicenseRow,
    QuarantineRow,
    RawRecord,
    ReturnCursor,
    ReturnedRecord,
    Source,
)

log = logging.getLogger(__name__)

PLATFORM = "provincial"
SOURCE_ID = "provincial.return"
_ID_FIELD = {"license": ("ZZBS", "BBH"), "case": ("BJBH", "BBH")}


@dataclass(frozen=True, slots=True)
class Item:
    """One well-formed version of the return interface."""

    cursor: int
    kind: RecordKind
    identifier: str
    version: int
    record: dict[str, Any]


class BadItem(ValueError):
    """A malformed item: ``field`` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def parse_item(raw: Any) -> Item:
    """Check one item of the interface; BadItem names the field at fault."""
    if not isinstance(raw, dict):
        raise BadItem("item", f"an item must be an object, not {type(raw).__name__}")
    kind = raw.get("kind")
    if kind not in _ID_FIELD:
        raise BadItem("kind", f"kind must be license or case, not {kind!r}")
    cursor, version = raw.get("cursor"), raw.get("version")
    if not isinstance(cursor, int) or isinstance(cursor, bool) or cursor < 1:
        raise BadItem("cursor", f"cursor must be a positive integer, not {cursor!r}")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise BadItem("version", f"version must be a positive integer, not {version!r}")
    identifier, record = raw.get("identifier"), raw.get("record")
    if not isinstance(identifier, str) or not identifier.strip() or len(identifier) > 120:
        raise BadItem("identifier", f"identifier must be 1-120 characters, not {identifier!r}")
    if not isinstance(record, dict):
        raise BadItem("record", "record must be an object")
    id_field, version_field = _ID_FIELD[kind]
    if str(record.get(id_field)) != identifier:
        raise BadItem(id_field, f"record {id_field} {record.get(id_field)!r} is not {identifier}")
    if record.get(version_field) != version:
        raise BadItem(version_field, f"record {version_field} {record.get(version_field)!r}"
                                     f" is not version {version}")  # fmt: skip
    return Item(cursor, cast(RecordKind, kind), identifier, version, record)


def _ensure_source(store: Store) -> None:
    with store.session() as s:
        insert_ignore(s, Source.__table__, [{
            "id": SOURCE_ID, "department": "省电子证照平台（返还接口）", "kind": "api",
            "record_kind": "license", "created_at": utcnow(),
        }], ["id"])  # fmt: skip


def _own_versions(s: Any, items: list[Item]) -> set[tuple[str, str, int]]:
    """Which of ``items`` are the hub's own record versions."""
    own: set[tuple[str, str, int]] = set()
    for kind, model, col in (("license", LicenseRow, LicenseRow.identifier),
                             ("case", CaseRow, CaseRow.case_number)):  # fmt: skip
        keys = [(i.identifier, i.version) for i in items if i.kind == kind]
        if keys:
            rows = s.execute(select(col, model.version).where(tuple_(col, model.version).in_(keys)))
            own |= {(kind, ident, ver) for ident, ver in rows}
    return own


def _quarantine(s: Any, division: str, raw: Any, err: BadItem) -> None:
    payload = raw if isinstance(raw, dict) else {"item": repr(raw)[:2000]}
    text = json.dumps(payload, ensure_ascii=False, sort_keys=True, default=str)
    key = str(payload.get("identifier") or payload.get("cursor") or "?")[:200]
    raw_row = {"source_id": SOURCE_ID, "source_key": key, "source_version": division,
               "payload": payload, "payload_hash": hashlib.sha256(text.encode()).hexdigest(),
               "state": "quarantined", "extracted_at": utcnow()}  # fmt: skip
    insert_ignore(s, RawRecord.__table__, [raw_row], ["source_id", "source_key", "payload_hash"])
    raw_id = s.execute(select(RawRecord.id).where(
        RawRecord.source_id == SOURCE_ID, RawRecord.source_key == key,
        RawRecord.payload_hash == raw_row["payload_hash"])).scalar_one()  # fmt: skip
    insert_ignore(s, QuarantineRow.__table__, [{
        "raw_id": raw_id, "source_id": SOURCE_ID, "source_key": key,
        "reason_code": "E_RETURN_MALFORMED", "field": err.field[:80],
        "message_zh": f"省平台返还数据格式错误（{err.field}）：{err}",
        "message_en": f"provincial return interface item malformed ({err.field}): {err}",
        "value": None, "payload": payload, "state": "open", "created_at": utcnow(),
    }], ["raw_id", "reason_code", "field"])  # fmt: skip


@dataclass
class _Counts:
    pages: int = 0
    read: int = 0
    own: int = 0
    returned: int = 0
    feed_rows: int = 0
    unroutable: int = 0
    malformed: int = 0


def _store_page(
    store: Store, router: FeedRouter, division: str, raw_items: list[Any], next_cursor: int,
    counts: _Counts,
) -> None:  # fmt: skip
    """One page in one transaction: records, feed rows, events, quarantine, cursor."""
    now = utcnow()
    with store.session() as s:
        items: list[Item] = []
        for raw in raw_items:
            try:
                items.append(parse_item(raw))
            except BadItem as err:
                _quarantine(s, division, raw, err)
                counts.malformed += 1
        own = _own_versions(s, items)
        events: list[Event] = []
        for item in items:
            if (item.kind, item.identifier, item.version) in own:
                counts.own += 1
                continue
            try:
                record_division: str | None = division_of(item.kind, item.record)
                targets = offices_for(cast(str, record_division), item.kind,
                                      item.record.get("ZZLXDM"), router.offices)  # fmt: skip
            except RoutingError as exc:
                record_division, targets = None, []
                counts.unroutable += 1
                events.append(Event("unroutable", item.identifier, item.version, {
                    "kind": item.kind, "origin": SOURCE_ID, "field": exc.field,
                    "reason": exc.reason_code, "message": exc.message_en[:300]}))  # fmt: skip
            insert_ignore(s, ReturnedRecord.__table__, [{
                "platform": PLATFORM, "kind": item.kind, "identifier": item.identifier,
                "version": item.version, "division": record_division,
                "status": item.record.get("ZZZT") if item.kind == "license" else None,
                "document": item.record, "platform_cursor": item.cursor, "received_at": now,
            }], ["platform", "kind", "identifier", "version"])  # fmt: skip
            rid = s.execute(select(ReturnedRecord.id).where(
                ReturnedRecord.platform == PLATFORM, ReturnedRecord.kind == item.kind,
                ReturnedRecord.identifier == item.identifier,
                ReturnedRecord.version == item.version)).scalar_one()  # fmt: skip
            rows = [{
                "kind": item.kind, "returned_id": rid, "office": o.code,
                "topic": router.topic(o), "message_key": item.identifier,
                "message_id": message_id(router.topic(o), item.identifier, item.version,
                                         item.kind),
                "state": "pending", "created_at": now,
            } for o in targets]  # fmt: skip
            insert_ignore(s, FeedMessageRow.__table__, rows, ["returned_id", "topic"],
                          where="returned_id IS NOT NULL")  # fmt: skip
            counts.returned += 1
            counts.feed_rows += len(rows)
        append(s, events)
        if counts.feed_rows and s.get_bind().dialect.name == "postgresql":
            s.execute(text(f"NOTIFY {NOTIFY_CHANNEL}"))  # wakes a continuous feed worker
        cursor = s.get(ReturnCursor, (PLATFORM, division))
        if cursor is None:
            s.add(ReturnCursor(platform=PLATFORM, division=division, cursor=next_cursor,
                               updated_at=now))  # fmt: skip
        else:
            cursor.cursor, cursor.updated_at = next_cursor, now


def run(
    settings: Settings, store: Store, *, client: ProvincialClient | None = None, limit: int = 500
) -> StageResult:
    """Read the return interface for every configured division prefix until caught up."""
    from ehub.pipeline.deliver import client_for

    own_client = client is None
    client = client or client_for(settings, PLATFORM)
    _ensure_source(store)
    router = FeedRouter.load(store, settings.return_topic_prefix)
    counts = _Counts()
    try:
        for division in [d.strip() for d in settings.return_divisions.split(",") if d.strip()]:
            while True:
                with store.session() as s:
                    row = s.get(ReturnCursor, (PLATFORM, division))
                    after = row.cursor if row is not None else 0
                page = client.return_page(division, after, limit)
                if not page.items:
                    break
                if page.next <= after:
                    raise ValueError(  # a platform bug: the cursor must move forward
                        f"provincial return interface for {division}: cursor {page.next}"
                        f" after {after} does not advance"
                    )
                _store_page(store, router, division, page.items, page.next, counts)
                counts.pages += 1
                counts.read += len(page.items)
                crash_point(settings.fault, "return_intake", counts.pages)
    finally:
        if own_client:
            client.close()
    log.info("return intake: %d pages, %d read, %d returned (%d feed rows), %d own, "
             "%d unroutable, %d malformed", counts.pages, counts.read, counts.returned,
             counts.feed_rows, counts.own, counts.unroutable, counts.malformed)  # fmt: skip
    return StageResult("return_intake", counts.pages, {
        "read": counts.read, "returned": counts.returned, "feed_rows": counts.feed_rows,
        "own": counts.own, "unroutable": counts.unroutable, "malformed": counts.malformed,
    })  # fmt: skip
