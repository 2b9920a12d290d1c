"""Extract stage: department rows → ``raw_records``, watermark advanced in the same transaction.

A crash before a batch's commit leaves the watermark where it was, so the
re-run reads the batch again; raw rows are keyed by
(source, source key, payload hash), so reading a row twice stores it once.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from connectors.sql import SqlSource, SqlSourceSpec
from ehub.audit import Event, append
from ehub.config import Settings
from ehub.pipeline import StageResult
from ehub.pipeline.faults import crash_point
from ehub.store.db import Store, insert_ignore, utcnow
from ehub.store.models import RawRecord, Source, Watermark

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceDef:
    """A department source as the foundation journey knows it (specs come in YAML later)."""

    id: str
    department: str
    kind: str
    record_kind: str
    table: str
    key_column: str
    cursor_column: str


MARKET_REGULATION = SourceDef(
    id="market_regulation.business_licenses",
    department="山东省市场监督管理局",
    kind="sql",
    record_kind="license",
    table="T_SCJG_YYZZ",
    key_column="ID",
    cursor_column="GXSJ",
)


def payload_hash(payload: dict[str, Any]) -> str:
    body = json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat(sep=" ") if isinstance(value, datetime) else value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def ensure_source(store: Store, src: SourceDef) -> None:
    with store.session() as s:
        insert_ignore(
            s,
            Source.__table__,
            [
                {
                    "id": src.id,
                    "department": src.department,
                    "kind": src.kind,
                    "record_kind": src.record_kind,
                    "created_at": utcnow(),
                }
            ],
            ["id"],
        )


def run(settings: Settings, store: Store, src: SourceDef = MARKET_REGULATION) -> StageResult:
    url = settings.require("market_regulation_url")
    ensure_source(store, src)
    with store.session() as s:
        wm = s.get(Watermark, src.id)
        cursor = wm.cursor if wm else None
    source = SqlSource(
        SqlSourceSpec(
            name=src.id,
            url=url,
            table=src.table,
            key_column=src.key_column,
            cursor_column=src.cursor_column,
            batch_size=settings.batch_size,
        )
    )
    batches = rows_read = new = 0
    try:
        for batch in source.read(cursor):
            batches += 1
            rows_read += len(batch.rows)
            raws = []
            for row in batch.rows:
                payload = {k: _jsonable(v) for k, v in row.items()}
                raws.append(
                    {
                        "source_id": src.id,
                        "source_key": str(row[src.key_column]),
                        "source_version": str(row[src.cursor_column]),
                        "payload": payload,
                        "payload_hash": payload_hash(payload),
                        "state": "pending",
                        "extracted_at": utcnow(),
                    }
                )
            crash_point(settings.fault, "extract", batches, "before")
            with store.session() as s:
                # Count only this batch's rows already stored (a full-table count per
                # batch would grow with the source).
                keys = {(r["source_key"], r["payload_hash"]) for r in raws}
                stored = set(
                    s.execute(
                        select(RawRecord.source_key, RawRecord.payload_hash).where(
                            RawRecord.source_id == src.id,
                            RawRecord.source_key.in_([k for k, _ in keys]),
                        )
                    ).tuples()
                )
                insert_ignore(
                    s, RawRecord.__table__, raws, ["source_id", "source_key", "payload_hash"]
                )
                added = len(keys - stored)
                new += added
                wm = s.get(Watermark, src.id)
                if wm is None:
                    s.add(Watermark(source_id=src.id, cursor=batch.cursor, updated_at=utcnow()))
                else:
                    wm.cursor = batch.cursor
                    wm.updated_at = utcnow()
                append(
                    s,
                    [
                        Event(
                            "extracted",
                            src.id,
                            None,
                            {"rows": len(raws), "new": added, "cursor": batch.cursor},
                        )
                    ],
                )
            crash_point(settings.fault, "extract", batches)
    finally:
        source.close()
    log.info("extract %s: %d batches, %d rows read, %d new", src.id, batches, rows_read, new)
    return StageResult("extract", batches, {"read": rows_read, "new": new})
