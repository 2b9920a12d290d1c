"""Extract stage: a department source → ``raw_records``, watermark advanced with them.

For each bounded batch the connector yields, one transaction stores the raw
records (keyed by source, source key and payload hash, so a record read twice
is stored once), the batch's cursor as the source's watermark and an audit
event; only then is the connector told to ``commit`` its own side effects
(move the file, commit Kafka offsets). A crash anywhere leaves the watermark at
the last committed batch, so a re-run loses nothing and duplicates nothing.

Mapping lookups (another table, an endpoint) are resolved here, per batch, and
kept in the raw payload under ``_lookups`` so normalization stays pure and a
quarantined record can be re-processed without the source.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any

import msgspec
from sqlalchemy import select

from connectors.source import Source, SourceBatch
from ehub.audit import Event, append
from ehub.config import Settings
from ehub.pipeline import StageResult
from ehub.pipeline.faults import crash_point
from ehub.sources.build import LookupResolver, build_source
from ehub.sources.spec import SourceSpec
from ehub.store.db import Store, insert_ignore, utcnow
from ehub.store.models import RawRecord, Watermark
from ehub.store.models import Source as SourceRow

log = logging.getLogger(__name__)

Progress = Callable[[int], None]


def no_nul(text: str) -> str:
    """``text`` fit for a text column: PostgreSQL refuses NUL characters in text (the
    JSON payload keeps them escaped), and one such key must not fail the whole batch."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def payload_hash(payload: dict[str, Any]) -> str:
    """sha256 hex of ``json.dumps(payload, ensure_ascii=False, sort_keys=True,
    separators=(",", ":"))``: the raw record's identity with its key, so it never
    changes. msgspec writes those bytes exactly for strings, integers, booleans, null,
    lists and string-keyed objects, several times faster; a payload holding anything
    else (a float: ``1e+16`` against ``1e16``) is hashed over ``json.dumps`` itself."""
    if _plain(payload):
        try:
            return hashlib.sha256(_SORTED.encode(payload)).hexdigest()
        except UnicodeEncodeError:  # a lone surrogate: json.dumps decides, as before
            pass
    body = json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


_SORTED = msgspec.json.Encoder(order="sorted")


def _plain(value: Any) -> bool:
    cls = value.__class__
    if cls in _SCALARS:
        return True
    if cls is dict:
        for k, v in value.items():
            if k.__class__ is not str or (v.__class__ not in _SCALARS and not _plain(v)):
                return False
        return True
    if cls is list:
        return all(v.__class__ in _SCALARS or _plain(v) for v in value)
    return False


_SCALARS = frozenset({str, int, bool, type(None)})


def ensure_source(store: Store, spec: SourceSpec) -> None:
    with store.session() as s:
        insert_ignore(
            s,
            SourceRow.__table__,
            [
                {
                    "id": spec.id,
                    "department": spec.department.name,
                    "kind": spec.kind,
                    "record_kind": spec.record_kind,
                    "created_at": utcnow(),
                }
            ],
            ["id"],
        )


def watermark(store: Store, source_id: str) -> str | None:
    with store.session() as s:
        wm = s.get(Watermark, source_id)
        return wm.cursor if wm else None


def run(
    settings: Settings,
    store: Store,
    spec: SourceSpec,
    *,
    source: Source | None = None,
    progress: Progress | None = None,
) -> StageResult:
    """Read everything new from ``spec``'s source into the store."""
    if settings.source_batch_size:
        spec = spec.model_copy(update={"batch_size": settings.source_batch_size})
    ensure_source(store, spec)
    if spec.kind == "api":  # nothing to pull: posts arrive through the API
        from ehub.pipeline.intake import reclaim

        return StageResult("extract", 0, {"read": 0, "new": 0, **reclaim(store, spec)})
    cursor = watermark(store, spec.id)
    src = source or build_source(spec, settings)
    lookups = LookupResolver(spec, src)
    batches = rows_read = new = 0
    try:
        for batch in src.read(cursor):
            batches += 1
            rows_read += len(batch.records)
            added = _store_batch(settings, store, spec, batch, lookups, batches)
            new += added
            crash_point(settings.fault, "extract", batches, "stored")  # before the connector commit
            src.commit(batch)
            crash_point(settings.fault, "extract", batches)
            if progress:
                progress(len(batch.records))
    finally:
        src.close()
    log.info("extract %s: %d batches, %d records read, %d new", spec.id, batches, rows_read, new)
    return StageResult("extract", batches, {"read": rows_read, "new": new})


def _store_batch(
    settings: Settings,
    store: Store,
    spec: SourceSpec,
    batch: SourceBatch,
    lookups: LookupResolver,
    n: int,
) -> int:
    found = lookups.resolve([r.payload for r in batch.records])
    raws: dict[tuple[str, str], dict[str, Any]] = {}
    for rec, extra in zip(batch.records, found, strict=True):
        payload = {**rec.payload, **({"_lookups": extra} if extra else {})}
        h = payload_hash(payload)
        key = no_nul(rec.key)[:200]
        raws[(key, h)] = {
            "source_id": spec.id,
            "source_key": key,
            "source_version": no_nul(rec.version)[:100],
            "payload": payload,
            "payload_hash": h,
            "state": "pending",
            "extracted_at": utcnow(),
        }
    crash_point(settings.fault, "extract", n, "before")
    with store.session() as s:
        # Count only this batch's rows already stored (a full-table count per
        # batch would grow with the source).
        stored = set(
            s.execute(
                select(RawRecord.source_key, RawRecord.payload_hash).where(
                    RawRecord.source_id == spec.id,
                    RawRecord.source_key.in_({k for k, _ in raws}),
                )
            ).tuples()
        )
        insert_ignore(
            s, RawRecord.__table__, list(raws.values()), ["source_id", "source_key", "payload_hash"]
        )
        added = len(set(raws) - stored)
        wm = s.get(Watermark, spec.id)
        if wm is None:
            s.add(Watermark(source_id=spec.id, cursor=batch.cursor, updated_at=utcnow()))
        else:
            wm.cursor = batch.cursor
            wm.updated_at = utcnow()
        append(
            s,
            [
                Event(
                    "extracted",
                    spec.id,
                    None,
                    {"rows": len(batch.records), "new": added, "cursor": batch.cursor[:200]},
                )
            ],
        )
    return added
