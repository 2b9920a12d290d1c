"""What one office receives, read from the hub store: pages behind a cursor, and exports.

The pull API (:mod:`ehub.office_api`) and ``ehub office export`` both read
here, so an office gets the same records whichever way it asks: sealed
license versions and case record versions of its jurisdiction
(:func:`ehub.routing.in_jurisdiction`), of the kinds and license types it is
granted, each as :func:`ehub.routing.view_for` makes it (only its fields,
personal data masked per its policy). A record whose division cannot be
routed is skipped here and counted (``unroutable``): it never reaches an office
silently.

Cursors are per kind: the store row id of the last record returned. Rows are
only ever added (a new version is a new row), so paging by id loses nothing.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import select

from ehub.offices import Office, RecordKind
from ehub.reports import csv_safe
from ehub.routing import RoutingError, division_of, in_jurisdiction, view_for
from ehub.store.db import Store
from ehub.store.models import CaseRow, LicenseRow

log = logging.getLogger(__name__)

ExportFormat = Literal["csv", "xlsx", "jsonl"]
EXPORT_FORMATS: tuple[ExportFormat, ...] = ("csv", "xlsx", "jsonl")
MAX_PAGE = 1000
#: Rows read from the store per query while filling a page (most may be outside
#: the jurisdiction of a small office).
SCAN = 2000


@dataclass(frozen=True, slots=True)
class Item:
    cursor: int
    kind: RecordKind
    identifier: str
    version: int
    division: str
    record: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"cursor": self.cursor, "kind": self.kind, "identifier": self.identifier,
                "version": self.version, "division": self.division, "record": self.record}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Page:
    items: list[Item]
    next: int
    """The cursor to ask with next (the last row read, even outside the jurisdiction)."""
    unroutable: int = 0
    more: bool = False


def _prefix(office: Office) -> str:
    """A string prefix every division of the office's jurisdiction starts with (a
    pre-filter for the store query; :func:`in_jurisdiction` decides)."""
    code = office.division
    if not office.include_children:
        return code
    if len(code) == 6 and code.endswith("0000"):
        return code[:2]
    if len(code) == 6 and code.endswith("00"):
        return code[:4]
    return code


def _query(kind: RecordKind, office: Office, after: int, since: datetime | None) -> Any:
    prefix = _prefix(office)
    if kind == "license":
        stmt = (
            select(LicenseRow.id, LicenseRow.identifier, LicenseRow.version, LicenseRow.document,
                   LicenseRow.type_code)
            .where(LicenseRow.state == "sealed", LicenseRow.id > after,
                   LicenseRow.holder_division.startswith(prefix))
            .order_by(LicenseRow.id)
        )  # fmt: skip
        if office.license_types:
            stmt = stmt.where(LicenseRow.type_code.in_(sorted(office.license_types)))
        if since is not None:
            stmt = stmt.where(LicenseRow.created_at >= since)
        return stmt
    stmt = (
        select(CaseRow.id, CaseRow.case_number, CaseRow.version, CaseRow.document, CaseRow.division)
        .where(CaseRow.id > after, CaseRow.division.startswith(prefix))
        .order_by(CaseRow.id)
    )
    if since is not None:
        stmt = stmt.where(CaseRow.created_at >= since)
    return stmt


def page(
    store: Store,
    office: Office,
    kind: RecordKind,
    *,
    after: int = 0,
    limit: int = 100,
    since: datetime | None = None,
) -> Page:
    """Up to ``limit`` records of ``kind`` for ``office`` after the cursor ``after``."""
    if kind not in office.kinds:
        return Page([], after)
    limit = max(1, min(limit, MAX_PAGE))
    items: list[Item] = []
    unroutable = 0
    cursor = after
    with store.session() as s:
        while True:
            rows = s.execute(_query(kind, office, cursor, since).limit(SCAN)).all()
            for n, row in enumerate(rows):
                rid, ident, version, doc = row[0], row[1], row[2], row[3]
                cursor = rid
                try:
                    division = division_of(kind, doc)
                except RoutingError as exc:
                    unroutable += 1
                    log.warning("office %s: %s", office.code, exc)
                    continue
                if in_jurisdiction(office, division):
                    items.append(Item(rid, kind, ident, version, division,
                                      view_for(office, kind, doc)))  # fmt: skip
                    if len(items) == limit:
                        more = n < len(rows) - 1 or len(rows) == SCAN
                        return Page(items, cursor, unroutable, more=more)
            if len(rows) < SCAN:
                return Page(items, cursor, unroutable, more=False)


def iter_all(
    store: Store, office: Office, kinds: Sequence[RecordKind], since: datetime | None = None
) -> Iterator[Item]:
    """Every record of the office (of ``kinds``) created since ``since``, page by page."""
    for kind in kinds:
        after = 0
        while True:
            p = page(store, office, kind, after=after, limit=MAX_PAGE, since=since)
            yield from p.items
            if not p.more:
                break
            after = p.next


@dataclass
class ExportResult:
    path: Path
    rows: int
    by_kind: dict[str, int] = field(default_factory=dict)


def _flat(item: Item) -> dict[str, Any]:
    """One export row: identity columns, then the record's fields (KZ flattened)."""
    row: dict[str, Any] = {"kind": item.kind, "identifier": item.identifier,
                           "version": item.version, "division": item.division}  # fmt: skip
    for k, v in item.record.items():
        if k == "KZ" and isinstance(v, dict):
            row.update({f"KZ.{kk}": vv for kk, vv in v.items()})
        elif isinstance(v, (dict, list)):
            row[k] = json.dumps(v, ensure_ascii=False)
        else:
            row[k] = v
    return row


def _cell(value: Any) -> Any:
    """Spreadsheet-safe: formula-like text quoted (as in the rejects reports)."""
    if value is None:
        return ""
    return csv_safe(value) if isinstance(value, str) else value


def _xlsx_cell(value: Any) -> Any:
    """:func:`_cell`, with the control characters a worksheet cannot hold replaced (as in
    the rejects reports): one such value must not fail the whole export."""
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    value = _cell(value)
    return ILLEGAL_CHARACTERS_RE.sub("\ufffd", value) if isinstance(value, str) else value


def export(
    store: Store,
    office: Office,
    out_dir: Path,
    fmt: ExportFormat,
    *,
    since: datetime | None = None,
    labels: dict[str, str] | None = None,
) -> ExportResult:
    """Write the office's records to ``out_dir/<office>-<kinds>.<fmt>`` (Chinese headers
    from ``labels``: field code → label). A revoked office gets none (as no feed, no pull)."""
    if not office.active:
        from ehub.offices import OfficeError

        raise OfficeError(f"office {office.code} is revoked; it receives no export",
                          field="office", office=office.code)  # fmt: skip
    kinds = sorted(office.kinds)
    rows = [_flat(i) for i in iter_all(store, office, kinds, since)]  # type: ignore[arg-type]
    columns: list[str] = []
    for r in rows:
        columns += [c for c in r if c not in columns]
    header = [f"{(labels or {}).get(c, c)}" for c in columns]
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{office.code}-{'-'.join(kinds)}.{fmt}"
    tmp = path.with_suffix(path.suffix + ".part")
    if fmt == "jsonl":
        with tmp.open("w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    elif fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(header)
        for r in rows:
            w.writerow([_cell(r.get(c)) for c in columns])
        tmp.write_text(buf.getvalue(), encoding="utf-8-sig")  # Excel opens it as UTF-8
    else:
        from openpyxl import Workbook

        wb = Workbook(write_only=True)
        ws = wb.create_sheet("返还数据")
        ws.append(header)
        for r in rows:
            ws.append([_xlsx_cell(r.get(c)) for c in columns])
        wb.save(tmp)
    tmp.replace(path)
    by_kind: dict[str, int] = {}
    for r in rows:
        by_kind[r["kind"]] = by_kind.get(r["kind"], 0) + 1
    return ExportResult(path, len(rows), by_kind)


_IDENTITY_LABELS = {"kind": "类别", "identifier": "标识", "version": "版本", "division": "行政区划"}


def field_labels() -> dict[str, str]:
    """Chinese column headers: field code → the label of ``schemas/{license,case}.schema.json``
    (the first word of each field's description; the code itself where there is none)."""
    import re

    from schemas import path as schema_path

    labels = dict(_IDENTITY_LABELS)
    for kind in ("license", "case"):
        doc = json.loads(schema_path(f"{kind}.schema.json").read_text(encoding="utf-8"))
        for code, spec in doc["properties"].items():
            first = re.split(r"[\s(;（]", str(spec.get("description", "")).strip(), maxsplit=1)[0]
            if first and re.search(r"[\u4e00-\u9fff]", first):
                labels.setdefault(code, first)
    return labels


@dataclass(frozen=True, slots=True)
class Freshness:
    """How current an office's Kafka feed is."""

    office: str
    published: int
    pending: int
    oldest_pending_s: float | None
    """Age of the oldest message not yet on the broker (the feed's current lag)."""
    p95_lag_s: float | None
    """95th percentile of commit-to-publication over the last ``window`` messages."""


def freshness(store: Store, *, window: int = 1000) -> list[Freshness]:
    """Per office: messages published and waiting, and the lag from the record's commit
    (its feed row is written in the same transaction) to its publication."""
    from sqlalchemy import func

    from ehub.on_demand import percentile
    from ehub.store.db import utcnow
    from ehub.store.models import FeedMessageRow as F

    def aware(value: datetime) -> datetime:
        from datetime import UTC

        return value if value.tzinfo else value.replace(tzinfo=UTC)

    now = utcnow()
    out: list[Freshness] = []
    with store.session() as s:
        counts: dict[str, dict[str, int]] = {}
        oldest: dict[str, datetime] = {}
        for code, state, n, first in s.execute(
            select(F.office, F.state, func.count(), func.min(F.created_at))
            .where(F.office.is_not(None))
            .group_by(F.office, F.state)
        ):
            office = str(code)
            counts.setdefault(office, {})[state] = int(n)
            if state in ("pending", "sending") and first is not None:
                oldest[office] = min(oldest.get(office, aware(first)), aware(first))
        for office in sorted(counts):
            lags = [
                (aware(pub) - aware(made)).total_seconds()
                for made, pub in s.execute(
                    select(F.created_at, F.published_at)
                    .where(F.office == office, F.state == "published")
                    .order_by(F.id.desc())
                    .limit(window)
                )
                if pub is not None
            ]
            c = counts[office]
            out.append(Freshness(
                office, c.get("published", 0), c.get("pending", 0) + c.get("sending", 0),
                (now - oldest[office]).total_seconds() if office in oldest else None,
                percentile(lags, 95),
            ))  # fmt: skip
    return out
