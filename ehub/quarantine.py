"""The quarantine as data engineers work with it: list, show, count and retry.

Every record the normalize stage rejects has one ``quarantine`` row per
(raw record, reason code, field), in state ``open``. :func:`retry` hands raw
records back to the normalize stage (raw state ``pending``, rows ``retried``);
in the next normalize run, :func:`settle_retried` resolves the rows (the
record now passes) or opens them again (the same defect again).

Personal data is masked (:mod:`ehub.quarantine_masking`) in everything
returned here unless the caller passes ``reveal=True``. Airflow-free; reads
and writes only the hub store; it must not normalize records itself.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Literal, TypeVar, get_args

from sqlalchemy import Select, func, select, update
from sqlalchemy.orm import Session

from ehub import codelists
from ehub.audit import Event, append
from ehub.errors import ConfigError, RecordError
from ehub.quarantine_masking import is_person_record, mask_payload, mask_value
from ehub.store.db import Store
from ehub.store.models import AuditEvent, QuarantineRow, RawRecord, Source

__all__ = [
    "STATES",
    "HistoryEvent",
    "Page",
    "QuarantineEntry",
    "QuarantineState",
    "QuarantinedRecord",
    "ReasonCount",
    "RetryResult",
    "counts",
    "iter_entries",
    "list_entries",
    "retry",
    "settle_retried",
    "show",
]

QuarantineState = Literal["open", "retried", "resolved"]
STATES: tuple[str, ...] = get_args(QuarantineState)
RETRIED_EVENT = "quarantine_retried"
_CHUNK = 500
_S = TypeVar("_S", bound=Select[*tuple[Any, ...]])

# ---------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class QuarantineEntry:
    """One defect of one quarantined raw record (one ``quarantine`` row)."""

    id: int
    raw_id: int
    """The raw record: what :func:`show` and :func:`retry` take."""
    source_id: str
    department: str
    source_key: str
    """The record's key in the department system."""
    reason_code: str
    field: str
    message_zh: str
    message_en: str
    value: str | None
    """The offending value, masked unless it was read with ``reveal=True``."""
    state: str
    created_at: datetime

    @property
    def fix_zh(self) -> str:
        """What the department should do (Chinese); empty for an unknown reason code."""
        return _fix(self.reason_code)[1]

    @property
    def fix_en(self) -> str:
        return _fix(self.reason_code)[0]


@dataclass(frozen=True, slots=True)
class Page:
    """One page of :func:`list_entries`; pass ``next_after`` as ``after`` for the next."""

    entries: tuple[QuarantineEntry, ...]
    next_after: int | None


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    """An audit event about a quarantined record."""

    at: datetime
    event: str
    detail: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class QuarantinedRecord:
    """A quarantined raw record with every defect found in it."""

    raw_id: int
    source_id: str
    department: str
    source_key: str
    source_version: str
    state: str
    """The raw record's state: quarantined, pending (retried) or normalized."""
    extracted_at: datetime
    payload: Mapping[str, Any]
    """The payload as extracted, masked unless read with ``reveal=True``."""
    errors: tuple[QuarantineEntry, ...]
    history: tuple[HistoryEvent, ...]


@dataclass(frozen=True, slots=True)
class ReasonCount:
    """Quarantine rows of one source and reason code."""

    source_id: str
    department: str
    reason_code: str
    records: int
    """Distinct raw records."""
    rows: int
    """Defects (a record may have the same reason in several fields)."""


@dataclass(frozen=True, slots=True)
class RetryResult:
    records: int
    """Raw records handed back to the normalize stage (or that would be, in a dry run)."""
    rows: int
    """Quarantine rows set to ``retried``."""
    dry_run: bool


# ---------------------------------------------------------------- queries


def list_entries(
    store: Store,
    *,
    source: str | None = None,
    department: str | None = None,
    reason: str | None = None,
    state: QuarantineState | None = "open",
    since: datetime | None = None,
    after: int = 0,
    limit: int = 50,
    reveal: bool = False,
) -> Page:
    """Quarantine rows matching every given filter, ordered by id, after id ``after``.

    ``state=None`` lists every state; ``since`` keeps rows quarantined at or after it.
    """
    if limit < 1:
        raise ConfigError(f"quarantine list: limit must be >= 1, got {limit}")
    stmt = _entries_query(source, department, reason, state, since)
    with store.session() as s:
        rows = s.execute(stmt.where(QuarantineRow.id > after).limit(limit)).all()
    entries = tuple(_entry(r, reveal) for r in rows)
    return Page(entries, entries[-1].id if len(entries) == limit else None)


def iter_entries(
    store: Store,
    *,
    source: str | None = None,
    department: str | None = None,
    reason: str | None = None,
    state: QuarantineState | None = "open",
    since: datetime | None = None,
    reveal: bool = False,
    batch: int = 1000,
) -> Iterator[QuarantineEntry]:
    """Every matching row, read in keyset pages of ``batch`` (memory stays flat)."""
    after = 0
    while True:
        page = list_entries(
            store,
            source=source,
            department=department,
            reason=reason,
            state=state,
            since=since,
            after=after,
            limit=batch,
            reveal=reveal,
        )
        yield from page.entries
        if page.next_after is None:
            return
        after = page.next_after


def counts(
    store: Store,
    *,
    source: str | None = None,
    department: str | None = None,
    state: QuarantineState | None = "open",
) -> tuple[ReasonCount, ...]:
    """Records and rows per (source, reason code), ordered by source then reason."""
    stmt = (
        select(
            QuarantineRow.source_id,
            Source.department,
            QuarantineRow.reason_code,
            func.count(func.distinct(QuarantineRow.raw_id)),
            func.count(),
        )
        .join(Source, Source.id == QuarantineRow.source_id)
        .group_by(QuarantineRow.source_id, Source.department, QuarantineRow.reason_code)
        .order_by(QuarantineRow.source_id, QuarantineRow.reason_code)
    )
    stmt = _filtered(stmt, source, department, None, state, None)
    with store.session() as s:
        return tuple(
            ReasonCount(src, dept, code, int(n_rec), int(n_rows))
            for src, dept, code, n_rec, n_rows in s.execute(stmt)
        )


def show(store: Store, raw_id: int, *, reveal: bool = False) -> QuarantinedRecord | None:
    """The raw record ``raw_id`` with all its quarantine rows and its audit history;
    None when no such record was ever quarantined."""
    with store.session() as s:
        raw = s.get(RawRecord, raw_id)
        if raw is None:
            return None
        rows = s.execute(
            _entries_query(None, None, None, None, None).where(QuarantineRow.raw_id == raw_id)
        ).all()
        if not rows:
            return None
        src = s.get(Source, raw.source_id)
        subject = f"{raw.source_id}/{raw.source_key}"
        history = tuple(
            HistoryEvent(_aware(ev.at), ev.event, MappingProxyType(dict(ev.detail)))
            for ev in s.execute(
                select(AuditEvent).where(AuditEvent.subject == subject).order_by(AuditEvent.id)
            ).scalars()
            if (ev.detail or {}).get("raw_id", raw_id) == raw_id
        )
        payload = dict(raw.payload) if reveal else mask_payload(raw.payload)
        return QuarantinedRecord(
            raw_id=raw.id,
            source_id=raw.source_id,
            department=src.department if src else "",
            source_key=raw.source_key,
            source_version=raw.source_version,
            state=raw.state,
            extracted_at=_aware(raw.extracted_at),
            payload=MappingProxyType(payload),
            errors=tuple(_entry(r, reveal) for r in rows),
            history=history,
        )


def retry(
    store: Store,
    *,
    raw_ids: Sequence[int] = (),
    source: str | None = None,
    reason: str | None = None,
    actor: str = "",
    dry_run: bool = False,
) -> RetryResult:
    """Hand quarantined raw records back to the normalize stage, in one transaction.

    Selects raw records in state ``quarantined`` with at least one ``open`` row
    matching every given selector (``raw_ids``, ``source``, ``reason``; at least
    one is required). Each selected record goes back to ``pending``, all its
    open rows become ``retried``, and a ``quarantine_retried`` audit event names
    it. ``dry_run`` only counts.
    """
    if not raw_ids and source is None and reason is None:
        raise ConfigError(
            "quarantine retry: name raw record ids, a source or a reason code "
            "(retrying the whole quarantine at once is not allowed)"
        )
    _check_reason(reason)
    ids = sorted({int(i) for i in raw_ids})
    records = rows = 0
    with store.session() as s:
        last = 0
        while True:
            chunk = _retry_chunk(s, ids, source, reason, last)
            if not chunk:
                break
            last = chunk[-1]
            found = s.execute(
                select(
                    QuarantineRow.raw_id,
                    QuarantineRow.source_id,
                    QuarantineRow.source_key,
                    QuarantineRow.reason_code,
                ).where(QuarantineRow.raw_id.in_(chunk), QuarantineRow.state == "open")
            ).all()
            records += len(chunk)
            rows += len(found)
            if dry_run:
                continue
            s.execute(
                update(QuarantineRow)
                .where(QuarantineRow.raw_id.in_(chunk), QuarantineRow.state == "open")
                .values(state="retried")
            )
            s.execute(
                update(RawRecord)
                .where(RawRecord.id.in_(chunk), RawRecord.state == "quarantined")
                .values(state="pending")
            )
            append(s, _retry_events(found, actor))
    return RetryResult(records, rows, dry_run)


def settle_retried(
    s: Session, raw_ids: Sequence[int], rejects: Sequence[Mapping[str, Any]]
) -> None:
    """Called by the normalize stage in its batch transaction, after inserting
    ``rejects`` with insert_ignore on (raw_id, reason_code, field), for the
    batch's ``raw_ids``: a ``retried`` row whose (reason, field) failed again —
    insert_ignore kept that existing row — is ``open`` again; one whose defect
    is gone is ``resolved``. One indexed SELECT when nothing was retried."""
    if not raw_ids:
        return
    retried = s.execute(
        select(
            QuarantineRow.id, QuarantineRow.raw_id, QuarantineRow.reason_code, QuarantineRow.field
        ).where(QuarantineRow.raw_id.in_(raw_ids), QuarantineRow.state == "retried")
    ).all()
    if not retried:
        return
    again = {(r["raw_id"], r["reason_code"], r["field"]) for r in rejects}
    reopen = [qid for qid, *key in retried if tuple(key) in again]
    resolved = [qid for qid, *key in retried if tuple(key) not in again]
    for ids, state in ((reopen, "open"), (resolved, "resolved")):
        if ids:
            s.execute(update(QuarantineRow).where(QuarantineRow.id.in_(ids)).values(state=state))


# ---------------------------------------------------------------- helpers


def _retry_chunk(
    s: Session, ids: list[int], source: str | None, reason: str | None, after: int
) -> list[int]:
    stmt = (
        select(QuarantineRow.raw_id)
        .join(RawRecord, RawRecord.id == QuarantineRow.raw_id)
        .where(
            QuarantineRow.state == "open",
            RawRecord.state == "quarantined",
            QuarantineRow.raw_id > after,
        )
        .group_by(QuarantineRow.raw_id)
        .order_by(QuarantineRow.raw_id)
        .limit(_CHUNK)
    )
    if ids:
        stmt = stmt.where(QuarantineRow.raw_id.in_(ids))
    if source is not None:
        stmt = stmt.where(QuarantineRow.source_id == source)
    if reason is not None:
        stmt = stmt.where(QuarantineRow.reason_code == reason)
    return [int(r) for r in s.scalars(stmt)]


def _retry_events(found: Sequence[Any], actor: str) -> list[Event]:
    by_raw: dict[int, tuple[str, str, set[str]]] = {}
    for raw_id, source_id, key, code in found:
        by_raw.setdefault(raw_id, (source_id, key, set()))[2].add(code)
    return [
        Event(
            RETRIED_EVENT,
            f"{source_id}/{key}",
            None,
            {"raw_id": raw_id, "reasons": sorted(codes), "by": actor},
        )
        for raw_id, (source_id, key, codes) in sorted(by_raw.items())
    ]


def _entries_query(
    source: str | None,
    department: str | None,
    reason: str | None,
    state: str | None,
    since: datetime | None,
) -> Select[*tuple[Any, ...]]:
    stmt = (
        select(
            QuarantineRow.id,
            QuarantineRow.raw_id,
            QuarantineRow.source_id,
            Source.department,
            QuarantineRow.source_key,
            QuarantineRow.reason_code,
            QuarantineRow.field,
            QuarantineRow.message_zh,
            QuarantineRow.message_en,
            QuarantineRow.value,
            QuarantineRow.state,
            QuarantineRow.created_at,
            QuarantineRow.payload,
        )
        .join(Source, Source.id == QuarantineRow.source_id)
        .order_by(QuarantineRow.id)
    )
    return _filtered(stmt, source, department, reason, state, since)


def _filtered(
    stmt: _S,
    source: str | None,
    department: str | None,
    reason: str | None,
    state: str | None,
    since: datetime | None,
) -> _S:
    if state is not None and state not in STATES:
        raise ConfigError(f"quarantine state {state!r} is not one of {', '.join(STATES)}")
    _check_reason(reason)
    if source is not None:
        stmt = stmt.where(QuarantineRow.source_id == source)
    if department is not None:
        stmt = stmt.where(Source.department == department)
    if reason is not None:
        stmt = stmt.where(QuarantineRow.reason_code == reason)
    if state is not None:
        stmt = stmt.where(QuarantineRow.state == state)
    if since is not None:
        stmt = stmt.where(QuarantineRow.created_at >= _aware(since))
    return stmt


def _check_reason(reason: str | None) -> None:
    if reason is not None and reason not in codelists.load("reason_codes"):
        known = ", ".join(codelists.load("reason_codes").codes)
        raise ConfigError(f"unknown reason code {reason!r}; known codes: {known}")


def _entry(row: Any, reveal: bool) -> QuarantineEntry:
    (qid, raw_id, src, dept, key, code, fld, zh, en, value, state, created, payload) = row
    if not reveal:
        value = mask_value(code, fld, value, person=is_person_record(payload or {}))
    return QuarantineEntry(
        qid, raw_id, src, dept, key, code, fld, zh, en, value, state, _aware(created)
    )


def _fix(reason_code: str) -> tuple[str, str]:
    try:
        return codelists.reason_fix(reason_code)
    except RecordError:  # a code retired from the list after the row was written
        return "", ""


def _aware(at: datetime) -> datetime:
    """Datetimes in UTC (SQLite hands them back naive)."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
