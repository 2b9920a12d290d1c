"""The story of one record, told from the audit chain and the hub store.

:func:`trace` takes a license identifier, a case number, a seal code, or a raw
record's ``<source id>/<source key>`` and returns every step the record went
through, per version and in the order the audit chain recorded them: the raw
record(s) extracted (source, key, when), normalization or quarantine (reason
codes), sealing (seal, level), delivery per destination with its receipt,
rejections, dead letters, return-feed topics, status changes.

Only identifiers, states, codes and times are returned; a license holder who is
a person appears masked (:mod:`ehub.masking`) and quarantined values are left
out, so a trace can be printed or shared. Read-only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from ehub.masking import mask_license_document
from ehub.store.db import Store
from ehub.store.models import (
    AuditEvent,
    CaseRow,
    DeliveryRow,
    FeedMessageRow,
    LicenseRow,
    QuarantineRow,
    RawRecord,
    SealRow,
    SignatureRow,
)


@dataclass(frozen=True)
class Step:
    """One thing that happened to a record."""

    at: str
    step: str
    detail: dict[str, Any]
    audit_row: int | None = None
    """Id of the audit event recording it (None: taken from the store)."""


@dataclass
class VersionStory:
    """Everything about one version of the record."""

    version: int | None
    facts: dict[str, Any] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    feeds: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Trace:
    kind: str
    """license | case | seal | raw (a source/key) | subject (audit events only) | unknown"""
    identifier: str
    versions: tuple[VersionStory, ...]

    @property
    def found(self) -> bool:
        return self.kind != "unknown"

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "identifier": self.identifier,
            "versions": [
                {
                    "version": v.version,
                    "facts": v.facts,
                    "steps": [s.__dict__ for s in v.steps],
                    "deliveries": v.deliveries,
                    "feeds": v.feeds,
                }
                for v in self.versions
            ],
        }


def trace(store: Store, identifier: str) -> Trace:
    """The story of ``identifier`` (kind ``unknown`` when neither store nor chain knows it)."""
    with store.session() as s:
        licenses = list(
            s.scalars(
                select(LicenseRow)
                .where(LicenseRow.identifier == identifier)
                .order_by(LicenseRow.version)
            )
        )
        if licenses:
            return Trace("license", identifier, tuple(_license_versions(s, identifier, licenses)))
        cases = list(
            s.scalars(
                select(CaseRow).where(CaseRow.case_number == identifier).order_by(CaseRow.version)
            )
        )
        if cases:
            return Trace("case", identifier, tuple(_case_versions(s, identifier, cases)))
        if s.scalar(select(SealRow.id).where(SealRow.code == identifier)) is not None:
            return Trace("seal", identifier, (_unversioned(s, identifier),))
        if "/" in identifier:
            source_id, _, key = identifier.partition("/")
            raws = list(
                s.scalars(
                    select(RawRecord).where(
                        RawRecord.source_id == source_id, RawRecord.source_key == key
                    )
                )
            )
            if raws:
                story = VersionStory(None)
                _raw_steps(s, story, raws)
                story.steps.sort(key=lambda st: st.at)
                return Trace("raw", identifier, (story,))
        story = _unversioned(s, identifier)
        return Trace("unknown" if not story.steps else "subject", identifier, (story,))


# --- internals -------------------------------------------------------------


def _iso(at: datetime | None) -> str:
    return at.isoformat() if at else ""


def _events(s: Session, subjects: list[str]) -> list[AuditEvent]:
    stmt = select(AuditEvent).where(AuditEvent.subject.in_(subjects)).order_by(AuditEvent.id)
    return list(s.scalars(stmt))


def _event_step(e: AuditEvent) -> Step:
    return Step(_iso(e.at), e.event, dict(e.detail or {}), e.id)


def _raw_steps(s: Session, story: VersionStory, raws: list[RawRecord]) -> None:
    """Extraction and quarantine of the raw records behind a version."""
    for raw in raws:
        story.steps.append(
            Step(
                _iso(raw.extracted_at),
                "extracted",
                {
                    "source": raw.source_id,
                    "key": raw.source_key,
                    "source_version": raw.source_version,
                    "raw_id": raw.id,
                },
            )
        )
        reasons = s.execute(
            select(
                QuarantineRow.reason_code,
                QuarantineRow.field,
                QuarantineRow.state,
                QuarantineRow.created_at,
            ).where(QuarantineRow.raw_id == raw.id)
        ).tuples()
        for code, fld, state, at in reasons:
            story.steps.append(
                Step(
                    _iso(at),
                    "quarantined",
                    {"raw_id": raw.id, "reason": code, "field": fld, "state": state},
                )
            )
    subjects = sorted({f"{r.source_id}/{r.source_key}"[:200] for r in raws})
    for e in _events(s, subjects):
        if e.event != "quarantined":  # already told from the quarantine table
            story.steps.append(_event_step(e))


def _earlier_raws(s: Session, rows: list[Any]) -> dict[int, list[RawRecord]]:
    """Raw records per version: the one normalized into it plus quarantined
    earlier attempts of the same source key (kept in the first version's story)."""
    out: dict[int, list[RawRecord]] = {}
    used: set[int] = set()
    for r in rows:
        if r.raw_id is not None:
            raw = s.get(RawRecord, r.raw_id)
            if raw is not None:
                out.setdefault(r.version, []).append(raw)
                used.add(raw.id)
    keys = {(r.source_id, r.source_key) for r in rows}
    if keys and rows:
        stmt = select(RawRecord).where(
            or_(*[(RawRecord.source_id == sid) & (RawRecord.source_key == k) for sid, k in keys]),
            RawRecord.state == "quarantined",
        )
        extra = [raw for raw in s.scalars(stmt) if raw.id not in used]
        out.setdefault(rows[0].version, []).extend(extra)
    return out


def _license_versions(s: Session, identifier: str, rows: list[LicenseRow]) -> list[VersionStory]:
    raws = _earlier_raws(s, rows)
    events = _events(s, [identifier])
    stories = []
    for row in rows:
        doc = mask_license_document(dict(row.document))
        story = VersionStory(
            row.version,
            {
                "state": row.state,
                "status": row.status,
                "type": row.type_code,
                "number": doc.get("ZZBH"),
                "issuer": row.issuer_code,
                "holder": doc.get("CZZT"),
                "county": row.county,
                "content_hash": row.content_hash,
                "source": row.source_id,
                "source_key": row.source_key,
            },
        )
        if row.state_reason:
            story.facts["state_reason"] = row.state_reason
        _raw_steps(s, story, raws.get(row.version, []))
        story.steps += [_event_step(e) for e in events if e.version == row.version]
        sig = s.execute(
            select(SignatureRow.format, SignatureRow.level, SignatureRow.signed_at, SealRow.code)
            .join(SealRow, SealRow.id == SignatureRow.seal_id)
            .where(SignatureRow.license_id == row.id)
        ).tuples()
        story.facts["signatures"] = [
            {"format": f, "level": lvl, "seal": code, "at": _iso(at)} for f, lvl, at, code in sig
        ]
        story.deliveries = _deliveries(s, DeliveryRow.license_id == row.id)
        story.feeds = [
            {"topic": t, "state": st, "partition": p, "offset": o, "published_at": _iso(at)}
            for t, st, p, o, at in s.execute(
                select(
                    FeedMessageRow.topic,
                    FeedMessageRow.state,
                    FeedMessageRow.partition,
                    FeedMessageRow.offset,
                    FeedMessageRow.published_at,
                )
                .where(FeedMessageRow.license_id == row.id)
                .order_by(FeedMessageRow.topic)
            ).tuples()
        ]
        story.steps.sort(key=lambda st: (st.at, st.audit_row or 0))
        stories.append(story)
    return stories


def _case_versions(s: Session, number: str, rows: list[CaseRow]) -> list[VersionStory]:
    raws = _earlier_raws(s, rows)
    events = _events(s, [number])
    stories = []
    for row in rows:
        story = VersionStory(
            row.version,
            {
                "division": row.division,
                "content_hash": row.content_hash,
                "source": row.source_id,
                "source_key": row.source_key,
            },
        )
        _raw_steps(s, story, raws.get(row.version, []))
        story.steps += [_event_step(e) for e in events if e.version == row.version]
        story.deliveries = _deliveries(s, DeliveryRow.case_id == row.id)
        story.steps.sort(key=lambda st: (st.at, st.audit_row or 0))
        stories.append(story)
    return stories


def _unversioned(s: Session, subject: str) -> VersionStory:
    story = VersionStory(None)
    story.steps = [_event_step(e) for e in _events(s, [subject])]
    return story


def _deliveries(s: Session, where: Any) -> list[dict[str, Any]]:
    stmt = (
        select(
            DeliveryRow.destination,
            DeliveryRow.state,
            DeliveryRow.receipt_id,
            DeliveryRow.attempts,
            DeliveryRow.delivered_at,
            DeliveryRow.last_error,
        )
        .where(where)
        .order_by(DeliveryRow.destination)
    )
    return [
        {
            "destination": d,
            "state": st,
            "receipt": rc,
            "attempts": n,
            "delivered_at": _iso(at),
            "error": (err or "").split(":", 1)[0] or None,
        }
        for d, st, rc, n, at, err in s.execute(stmt).tuples()
    ]
