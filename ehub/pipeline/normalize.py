"""Normalize stage: a source's pending raw records → canonical versions or quarantine.

Per batch, in one transaction: new license / case versions, quarantine rows
(reason code, field, bilingual message, value, raw payload), the raw records'
final state and audit events. Every raw record ends in exactly one state:
``normalized`` or ``quarantined``.

Besides the pure field checks of :class:`~ehub.normalize.canonical.SpecNormalizer`,
this stage applies the rules that need the store, in read order:

- **duplicate** (E_DUPLICATE): another source record (different source key)
  already carries the same license (same identifier — derived from type, issuer
  and license number when the source has none) or case number, same content;
- **conflicting version** (E_VERSION_CONFLICT): the same, with different
  content; or, for sources that number their versions (BBH), the same version
  with different content, or an older version after a newer one;
- **status transition** (E_STATUS_TRANSITION): a revoked or cancelled license
  does not become valid or suspended again under the same identifier.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import select, update

from ehub import divisions, feeds
from ehub.audit import Event, append
from ehub.config import Settings
from ehub.errors import RecordError
from ehub.feeds import FeedRouter
from ehub.normalize import RecordRejected
from ehub.normalize.canonical import SpecNormalizer
from ehub.normalize.case_json import case_document
from ehub.pipeline import StageResult, outbox
from ehub.pipeline.extract import no_nul
from ehub.pipeline.faults import crash_point
from ehub.quarantine import settle_retried
from ehub.records import CaseRecord, License, license_to_json
from ehub.sources.spec import SourceSpec
from ehub.store.db import Store, insert_ignore, json_text, loads_json, utcnow
from ehub.store.models import CaseRow, LicenseRow, QuarantineRow, RawRecord

log = logging.getLogger(__name__)

TERMINAL = frozenset({"revoked", "cancelled"})
LIVE = frozenset({"valid", "suspended"})


@dataclass
class _Known:
    """What the store knows of one license identifier / case number."""

    latest: tuple[int, str, str, str, str] | None  # version, hash, source_id, key, status
    versions: dict[int, str]  # version → content hash


def run(
    settings: Settings,
    store: Store,
    spec: SourceSpec,
    *,
    progress: Callable[[int], None] | None = None,
) -> StageResult:
    norm = SpecNormalizer(spec)
    # The offices receiving case records, read once per run (not once per batch).
    router = (
        FeedRouter.load(store, settings.return_topic_prefix) if spec.record_kind == "case" else None
    )
    batches = normalized = quarantined = versions = 0
    while True:
        with store.session() as s:
            raws = [
                (raw_id, key, sver, loads_json(payload))
                for raw_id, key, sver, payload in s.execute(
                    select(
                        RawRecord.id,
                        RawRecord.source_key,
                        RawRecord.source_version,
                        json_text(RawRecord.payload),
                    )
                    .where(RawRecord.source_id == spec.id, RawRecord.state == "pending")
                    .order_by(RawRecord.id)
                    .limit(settings.batch_size)
                )
            ]
        if not raws:
            break
        batches += 1
        out = process_batch(settings, store, spec, norm, raws, batches, router=router)
        normalized += len(out.ok_ids)
        quarantined += len(out.bad_ids)
        versions += out.new_versions
        crash_point(settings.fault, "normalize", batches)
        if progress:
            progress(len(raws))
    log.info(
        "normalize %s: %d batches, %d normalized (%d new versions), %d quarantined",
        spec.id,
        batches,
        normalized,
        versions,
        quarantined,
    )
    return StageResult(
        "normalize",
        batches,
        {"normalized": normalized, "quarantined": quarantined, "new_versions": versions},
    )


@dataclass(frozen=True)
class BatchOutcome:
    """What one batch of raw records became."""

    ok_ids: list[int]
    bad_ids: list[int]
    new_versions: int
    records: dict[int, tuple[str, int | None]]
    """raw id → (license identifier / case number, new version or None when the
    content equals a stored version)."""
    rejects: list[dict[str, Any]]
    """Quarantine rows written (``raw_id``, ``reason_code``, ``field``, messages…)."""


def process_batch(
    settings: Settings,
    store: Store,
    spec: SourceSpec,
    norm: SpecNormalizer,
    raws: Sequence[tuple[int, str, str, Any]],
    n: int,
    *,
    license_state: str = "normalized",
    router: FeedRouter | None = None,
) -> BatchOutcome:
    """Normalize ``raws`` (id, source key, source version, payload) in one transaction.

    ``license_state``: the state of new license versions — ``normalized`` for the
    seal stage, ``sealing`` when the on-demand sealing API seals them itself.
    ``router``: the offices of the case records' return feeds (read from the store
    when not given).
    """
    outcome: dict[int, tuple[str, int | None]] = {}
    records: list[tuple[int, str, License | CaseRecord]] = []
    rejects: list[dict[str, Any]] = []
    for raw_id, key, sver, payload in raws:
        try:
            records.append((raw_id, key, norm.normalize(payload, key, sver)))
        except RecordRejected as rej:
            rejects += [_reject(raw_id, spec.id, key, payload, e) for e in rej.errors]
    crash_point(settings.fault, "normalize", n, "before")
    if router is None and spec.record_kind == "case":
        router = FeedRouter.load(store, settings.return_topic_prefix)
    with store.session() as s:
        known = _load_known(s, spec.record_kind, [r for _, _, r in records])
        rows, events = [], []
        ok_ids = []
        payloads = {raw_id: payload for raw_id, _, _, payload in raws}
        for raw_id, key, rec in records:
            version, err = _decide(spec, key, rec, known)
            if err is not None:
                rejects.append(_reject(raw_id, spec.id, key, payloads[raw_id], err))
                continue
            ok_ids.append(raw_id)
            if version is None:
                outcome[raw_id] = (_natural_key(rec), None)
                continue  # same content as a stored version: nothing new
            rec = replace(rec, version=version)
            nk = _natural_key(rec)
            entry = known.setdefault(nk, _Known(None, {}))
            entry.versions[version] = rec.lineage.content_hash
            if entry.latest is None or version > entry.latest[0]:
                entry.latest = (version, rec.lineage.content_hash, spec.id, key, _status(rec))
            rows.append(version_row(rec, spec.id, raw_id, state=license_state))
            outcome[raw_id] = (nk, version)
            events.append(Event("normalized", nk, version, {"raw_id": raw_id}))
        if spec.record_kind == "license":
            insert_ignore(s, LicenseRow.__table__, rows, ["identifier", "version"])
        else:
            stored = outbox.store_case_versions(s, rows)
            feed_rows = []
            assert router is not None
            for cid, number, ver, doc in stored:  # return feeds of the offices concerned
                got, unroutable = router.rows("case", cid, number, ver, doc)
                feed_rows += got
                events += unroutable
            feeds.insert_rows(s, feed_rows)
        _write_quarantine(s, rejects)
        settle_retried(s, [r[0] for r in raws], rejects)  # retried: open again or resolved
        bad_ids = sorted({r["raw_id"] for r in rejects})
        if ok_ids:
            s.execute(update(RawRecord).where(RawRecord.id.in_(ok_ids)).values(state="normalized"))
            ok = set(ok_ids)
            _resolve_corrected(s, spec.id, [k for r, k, _ in records if r in ok], ok_ids)
        if bad_ids:
            s.execute(
                update(RawRecord).where(RawRecord.id.in_(bad_ids)).values(state="quarantined")
            )
        events += [
            Event(
                "quarantined",
                f"{spec.id}/{r['source_key']}"[:200],  # audit subject: 200 chars
                None,
                {"raw_id": r["raw_id"], "reason": r["reason_code"], "field": r["field"]},
            )
            for r in rejects
        ]
        if norm.dropped:
            events.append(Event("fields_dropped", spec.id, None, dict(norm.dropped)))
            norm.dropped.clear()
        append(s, events)
    return BatchOutcome(ok_ids, bad_ids, len(rows), outcome, rejects)


def _natural_key(rec: License | CaseRecord) -> str:
    return rec.identifier if isinstance(rec, License) else rec.case_number


def _status(rec: License | CaseRecord) -> str:
    return str(rec.status) if isinstance(rec, License) else rec.state


def _load_known(s: Any, kind: str, recs: Sequence[License | CaseRecord]) -> dict[str, _Known]:
    keys = sorted({_natural_key(r) for r in recs})
    known: dict[str, _Known] = {}
    if not keys:
        return known
    if kind == "license":
        stmt = select(
            LicenseRow.identifier,
            LicenseRow.version,
            LicenseRow.content_hash,
            LicenseRow.source_id,
            LicenseRow.source_key,
            LicenseRow.status,
        ).where(LicenseRow.identifier.in_(keys))
    else:
        stmt = select(
            CaseRow.case_number,
            CaseRow.version,
            CaseRow.content_hash,
            CaseRow.source_id,
            CaseRow.source_key,
            CaseRow.document["BJZT"].as_string(),
        ).where(CaseRow.case_number.in_(keys))
    for nk, version, chash, src, key, status in s.execute(stmt):
        entry = known.setdefault(nk, _Known(None, {}))
        entry.versions[version] = chash
        if entry.latest is None or version > entry.latest[0]:
            entry.latest = (version, chash, src, key, status)
    return known


def _decide(
    spec: SourceSpec, key: str, rec: License | CaseRecord, known: dict[str, _Known]
) -> tuple[int | None, RecordError | None]:
    """(version to store or None for 'nothing new', or the store-level defect)."""
    nk = _natural_key(rec)
    entry = known.get(nk)
    h = rec.lineage.content_hash
    is_license = isinstance(rec, License)
    field = ("ZZBH" if is_license else "BJBH") if not rec.version else "BBH"
    if entry is None or entry.latest is None:
        return (rec.version or 1), None
    latest_v, latest_h, latest_src, latest_key, latest_status = entry.latest
    if rec.version:  # the source numbers its versions
        stored = entry.versions.get(rec.version)
        if stored is not None:
            if stored == h:
                return None, None
            return None, _conflict(nk, field, f"version {rec.version} already stored with "
                                   "different content", f"版本 {rec.version} 已存在且内容不同")  # fmt: skip
        if rec.version < latest_v:
            return None, _conflict(nk, field, f"version {rec.version} arrives after version "
                                   f"{latest_v}", f"版本 {rec.version} 晚于版本 {latest_v} 到达")  # fmt: skip
    elif (latest_src, latest_key) != (spec.id, key):
        where = f"{latest_src}/{latest_key}"
        if latest_h == h:
            what = "license" if is_license else "case"
            return None, RecordError(
                "E_DUPLICATE",
                field,
                f"duplicate of source record {where} (same {what} {nk}, same content)",
                f"与源记录 {where} 重复（同一{'证照' if is_license else '办件'} {nk}，内容相同）",
                value=nk,
            )
        return None, _conflict(nk, field, f"source record {where} carries the same key "
                               "with different content", f"源记录 {where} 的同一标识内容不同")  # fmt: skip
    elif latest_h == h:
        return None, None
    if is_license and latest_status in TERMINAL and _status(rec) in LIVE:
        return None, RecordError(
            "E_STATUS_TRANSITION",
            "ZZZT",
            f"license {nk} is {latest_status}; it cannot become {_status(rec)} again "
            "without a new license version (new identifier)",
            f"证照 {nk} 已{'吊销' if latest_status == 'revoked' else '注销'}，"
            "不能在未换发新版本（新证照标识）的情况下恢复为有效",
            value=_status(rec),
        )
    return (rec.version or latest_v + 1), None


def _conflict(nk: str, field: str, en: str, zh: str) -> RecordError:
    return RecordError("E_VERSION_CONFLICT", field, f"{nk}: {en}", f"{nk}：{zh}", value=nk)


def _reject(
    raw_id: int, source_id: str, key: str, payload: Any, err: RecordError
) -> dict[str, Any]:
    return {
        "raw_id": raw_id,
        "source_id": source_id,
        "source_key": no_nul(key),
        "reason_code": err.reason_code,
        "field": no_nul(err.field)[:80],
        "message_zh": no_nul(err.message_zh),
        "message_en": no_nul(err.message_en),
        "value": None if err.value is None else no_nul(str(err.value))[:200],
        "payload": payload,
        "state": "open",
        "created_at": utcnow(),
    }


def _resolve_corrected(s: Any, source_id: str, keys: list[str], ok_ids: list[int]) -> None:
    """A department corrected a record at source: its older quarantine rows are resolved."""
    if keys:
        s.execute(
            update(QuarantineRow)
            .where(
                QuarantineRow.source_id == source_id,
                QuarantineRow.source_key.in_(keys),
                QuarantineRow.state.in_(("open", "retried")),
                QuarantineRow.raw_id.not_in(ok_ids),
            )
            .values(state="resolved")
        )


def _write_quarantine(s: Any, rejects: list[dict[str, Any]]) -> None:
    insert_ignore(s, QuarantineRow.__table__, rejects, ["raw_id", "reason_code", "field"])


def version_row(
    rec: License | CaseRecord, source_id: str, raw_id: int | None, *, state: str = "normalized"
) -> dict[str, Any]:
    """The store row of one record version (``raw_id`` None: made at the hub, not ingested)."""
    if isinstance(rec, CaseRecord):
        return {
            "case_number": rec.case_number,
            "version": rec.version,
            "division": rec.division,
            "content_hash": rec.lineage.content_hash,
            "document": case_document(rec),
            "source_id": source_id,
            "source_key": rec.lineage.source_key,
            "raw_id": raw_id,
            "created_at": utcnow(),
        }
    return {
        "identifier": rec.identifier,
        "version": rec.version,
        "type_code": rec.type_code,
        "issuer_code": rec.issuer_code,
        "holder_division": rec.holder_division,
        "county": divisions.county_of(rec.holder_division),
        "status": str(rec.status),
        "content_hash": rec.lineage.content_hash,
        "document": license_to_json(rec),
        "source_id": source_id,
        "source_key": rec.lineage.source_key,
        "raw_id": raw_id,
        "state": state,
        "state_reason": None,
        "created_at": utcnow(),
        "state_at": utcnow(),
    }
