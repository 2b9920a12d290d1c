"""Normalize stage: pending raw rows → license versions or quarantine.

Per batch, in one transaction: new license versions (only when the content
hash differs from the latest version of the same identifier), quarantine rows
with reason code, field and bilingual message, the raw rows' final state, and
audit events. Every raw row ends in exactly one state: normalized or quarantined.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from sqlalchemy import func, select, update

from ehub import divisions
from ehub.audit import Event, append
from ehub.config import Settings
from ehub.normalize import RecordRejected, business_license
from ehub.pipeline import StageResult
from ehub.pipeline.extract import MARKET_REGULATION, SourceDef
from ehub.pipeline.faults import crash_point
from ehub.records import License, license_to_json
from ehub.store.db import Store, insert_ignore, utcnow
from ehub.store.models import LicenseRow, QuarantineRow, RawRecord

log = logging.getLogger(__name__)

NORMALIZERS = {MARKET_REGULATION.id: business_license.normalize}


def run(settings: Settings, store: Store, src: SourceDef = MARKET_REGULATION) -> StageResult:
    normalize_one = NORMALIZERS[src.id]
    batches = normalized = quarantined = versions = 0
    while True:
        with store.session() as s:
            raws = list(
                s.execute(
                    select(
                        RawRecord.id,
                        RawRecord.source_key,
                        RawRecord.source_version,
                        RawRecord.payload,
                    )
                    .where(RawRecord.source_id == src.id, RawRecord.state == "pending")
                    .order_by(RawRecord.id)
                    .limit(settings.batch_size)
                )
            )
        if not raws:
            break
        batches += 1
        licenses: list[tuple[int, License]] = []
        rejects: list[dict[str, Any]] = []
        for raw_id, key, sver, payload in raws:
            try:
                licenses.append(
                    (
                        raw_id,
                        normalize_one(payload, source=src.id, source_key=key, source_version=sver),
                    )
                )
            except RecordRejected as rej:
                for err in rej.errors:
                    rejects.append(
                        {
                            "raw_id": raw_id,
                            "source_id": src.id,
                            "source_key": key,
                            "reason_code": err.reason_code,
                            "field": err.field,
                            "message_zh": err.message_zh,
                            "message_en": err.message_en,
                            "value": None if err.value is None else str(err.value)[:200],
                            "payload": payload,
                            "state": "open",
                            "created_at": utcnow(),
                        }
                    )
        crash_point(settings.fault, "normalize", batches, "before")
        with store.session() as s:
            ids = [lic.identifier for _, lic in licenses]
            latest: dict[str, tuple[int, str]] = {}
            if ids:
                sub = (
                    select(LicenseRow.identifier, func.max(LicenseRow.version).label("v"))
                    .where(LicenseRow.identifier.in_(ids))
                    .group_by(LicenseRow.identifier)
                    .subquery()
                )
                for ident, ver, chash in s.execute(
                    select(LicenseRow.identifier, LicenseRow.version, LicenseRow.content_hash).join(
                        sub,
                        (LicenseRow.identifier == sub.c.identifier)
                        & (LicenseRow.version == sub.c.v),
                    )
                ):
                    latest[ident] = (ver, chash)
            rows = []
            events = []
            for raw_id, lic in licenses:
                prev = latest.get(lic.identifier)
                if prev and prev[1] == lic.lineage.content_hash:
                    continue  # same content as the latest version: nothing new
                version = prev[0] + 1 if prev else 1
                lic = replace(lic, version=version)
                latest[lic.identifier] = (version, lic.lineage.content_hash)
                rows.append(_license_row(lic, src.id, raw_id))
                events.append(Event("normalized", lic.identifier, version, {"raw_id": raw_id}))
            insert_ignore(s, LicenseRow.__table__, rows, ["identifier", "version"])
            insert_ignore(s, QuarantineRow.__table__, rejects, ["raw_id", "reason_code", "field"])
            ok_ids = [raw_id for raw_id, _ in licenses]
            bad_ids = sorted({r["raw_id"] for r in rejects})
            if ok_ids:
                s.execute(
                    update(RawRecord).where(RawRecord.id.in_(ok_ids)).values(state="normalized")
                )
            if bad_ids:
                s.execute(
                    update(RawRecord).where(RawRecord.id.in_(bad_ids)).values(state="quarantined")
                )
            events += [
                Event(
                    "quarantined",
                    f"{src.id}/{r['source_key']}",
                    None,
                    {"raw_id": r["raw_id"], "reason": r["reason_code"], "field": r["field"]},
                )
                for r in rejects
            ]
            append(s, events)
        normalized += len(licenses)
        quarantined += len(bad_ids)
        versions += len(rows)
        crash_point(settings.fault, "normalize", batches)
    log.info(
        "normalize %s: %d batches, %d normalized (%d new versions), %d quarantined",
        src.id,
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


def _license_row(lic: License, source_id: str, raw_id: int) -> dict[str, Any]:
    return {
        "identifier": lic.identifier,
        "version": lic.version,
        "type_code": lic.type_code,
        "issuer_code": lic.issuer_code,
        "holder_division": lic.holder_division,
        "county": divisions.county_of(lic.holder_division),
        "status": str(lic.status),
        "content_hash": lic.lineage.content_hash,
        "document": license_to_json(lic),
        "source_id": source_id,
        "source_key": lic.lineage.source_key,
        "raw_id": raw_id,
        "state": "normalized",
        "state_reason": None,
        "created_at": utcnow(),
    }
