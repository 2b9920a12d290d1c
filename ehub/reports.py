"""Rejects reports: the open quarantine of one department or source, written as
CSV and XLSX files that can be sent back to the department.

One row per defect with Chinese headers (来源, 记录标识, 字段, 源字段, 原因代码, 原因,
值, 修改建议); personal data in the value column is masked (ehub.quarantine's
masking policy). Rows are streamed from the store in keyset pages and written
as they come (``write_only`` workbook), so a large quarantine never sits in
memory. Only reads the store; it must not change quarantine state.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Alignment, Font
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet
from sqlalchemy import select

from ehub import codelists, quarantine
from ehub.errors import ConfigError, RecordError
from ehub.store.db import Store
from ehub.store.models import Source

__all__ = [
    "FORMATS",
    "HEADERS",
    "SUMMARY_HEADERS",
    "ReportFormat",
    "ReportScope",
    "resolve_scope",
    "write_rejects_report",
]

log = logging.getLogger(__name__)

ReportFormat = Literal["csv", "xlsx"]
FORMATS: tuple[ReportFormat, ...] = ("csv", "xlsx")
HEADERS = ("来源", "记录标识", "字段", "源字段", "原因代码", "原因", "值", "修改建议")
WIDTHS = (32, 22, 14, 16, 22, 40, 30, 60)
SUMMARY_HEADERS = ("原因代码", "原因", "记录数", "问题数", "修改建议")
SUMMARY_WIDTHS = (22, 28, 10, 10, 80)
REJECTS_SHEET = "退回记录"
SUMMARY_SHEET = "汇总"
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True, slots=True)
class ReportScope:
    """Whose rejects: one department (every source of it) or one source."""

    department: str | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        if (self.department is None) == (self.source is None):
            raise ConfigError("a rejects report needs exactly one of a department or a source")

    @property
    def name(self) -> str:
        return self.department or self.source or ""


def resolve_scope(store: Store, department_or_source: str) -> ReportScope:
    """A source id if one matches, else a department name; ConfigError naming the known ones."""
    with store.session() as s:
        rows = s.execute(select(Source.id, Source.department)).all()
    if any(sid == department_or_source for sid, _ in rows):
        return ReportScope(source=department_or_source)
    if any(dept == department_or_source for _, dept in rows):
        return ReportScope(department=department_or_source)
    known = sorted({d for _, d in rows} | {sid for sid, _ in rows})
    raise ConfigError(
        f"rejects report: {department_or_source!r} is neither a source nor a department "
        f"of the hub store; known: {', '.join(known) or 'none'}"
    )


def write_rejects_report(
    store: Store,
    department_or_source: str | ReportScope,
    out_dir: Path,
    formats: Sequence[ReportFormat] = FORMATS,
) -> list[Path]:
    """Write the open quarantine of a department or source to ``out_dir``.

    Files are named ``rejects-<name>.csv`` / ``.xlsx``; existing ones are
    replaced. Returns the paths written, in the order of ``formats``.
    """
    scope = (
        department_or_source
        if isinstance(department_or_source, ReportScope)
        else resolve_scope(store, department_or_source)
    )
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ConfigError(f"rejects report formats must be among {FORMATS}, got {tuple(formats)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"rejects-{_slug(scope.name)}"
    paths: list[Path] = []
    for fmt in dict.fromkeys(formats):
        path = out_dir / f"{stem}.{fmt}"
        tmp = path.with_name(path.name + ".part")
        if fmt == "csv":
            n = _write_csv(tmp, _rows(store, scope))
        else:
            n = _write_xlsx(tmp, _rows(store, scope), _summary(store, scope))
        tmp.replace(path)
        log.info("rejects report %s: %d rows -> %s", scope.name, n, path)
        paths.append(path)
    return paths


def _source_fields(source_id: str) -> dict[str, str]:
    """Canonical field → the department's own field name(s), from the source's spec,
    so the department sees the column or element it must correct."""
    from ehub.errors import SpecError
    from ehub.sources.loader import find_spec

    try:
        spec = find_spec(source_id)
    except SpecError:
        return {}
    out = {}
    for target, fm in spec.mapping.items():
        out[target] = fm.from_ or (" + ".join(fm.concat) if fm.concat else "")
    return out


def _rows(store: Store, scope: ReportScope) -> Iterator[tuple[str, ...]]:
    specs: dict[str, dict[str, str]] = {}
    for e in quarantine.iter_entries(
        store, source=scope.source, department=scope.department, state="open"
    ):
        if e.source_id not in specs:
            specs[e.source_id] = _source_fields(e.source_id)
        # An undeclared field (E_FIELD_UNKNOWN) is named by its source name already.
        source_field = specs[e.source_id].get(e.field, e.field if e.field not in specs else "")
        yield (
            e.source_id,
            e.source_key,
            e.field,
            source_field,
            e.reason_code,
            e.message_zh,
            e.value or "",
            e.fix_zh,
        )


def _summary(store: Store, scope: ReportScope) -> list[tuple[Any, ...]]:
    per_reason: dict[str, list[int]] = {}
    for c in quarantine.counts(store, source=scope.source, department=scope.department):
        tot = per_reason.setdefault(c.reason_code, [0, 0])
        tot[0] += c.records
        tot[1] += c.rows
    out: list[tuple[Any, ...]] = []
    for code, (records, rows) in sorted(per_reason.items()):
        try:
            zh, fix = codelists.reason_message(code)[1], codelists.reason_fix(code)[1]
        except RecordError:
            zh, fix = "", ""
        out.append((code, zh, records, rows, fix))
    return out


def _write_csv(path: Path, rows: Iterable[tuple[str, ...]]) -> int:
    n = 0
    # utf-8-sig: the BOM makes Excel read the file as UTF-8 (Chinese text intact).
    with path.open("w", encoding="utf-8-sig", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADERS)
        for row in rows:
            w.writerow([csv_safe(v) for v in row])
            n += 1
    return n


def _write_xlsx(
    path: Path, rows: Iterable[tuple[str, ...]], summary: Sequence[tuple[Any, ...]]
) -> int:
    wb = Workbook(write_only=True)
    ws = _sheet(wb, REJECTS_SHEET, HEADERS, WIDTHS)
    n = 0
    for row in rows:
        ws.append([_text_cell(ws, v) for v in row])
        n += 1
    ws.auto_filter.ref = f"A1:{get_column_letter(len(HEADERS))}{n + 1}"
    ws2 = _sheet(wb, SUMMARY_SHEET, SUMMARY_HEADERS, SUMMARY_WIDTHS)
    for code, zh, records, count, fix in summary:
        ws2.append(
            [_text_cell(ws2, code), _text_cell(ws2, zh), records, count, _text_cell(ws2, fix)]
        )
    wb.save(path)
    return n


def _sheet(
    wb: Workbook, title: str, headers: Sequence[str], widths: Sequence[int]
) -> WriteOnlyWorksheet:
    ws = wb.create_sheet(title)
    assert isinstance(ws, WriteOnlyWorksheet)
    for i, width in enumerate(widths, start=1):
        ws.column_dimensions[get_column_letter(i)].width = width
    ws.freeze_panes = "A2"
    bold = Font(bold=True)
    header = []
    for h in headers:
        c = WriteOnlyCell(ws, value=h)
        c.font = bold
        c.alignment = Alignment(vertical="center")
        header.append(c)
    ws.append(header)
    return ws


def _text_cell(ws: WriteOnlyWorksheet, value: str) -> WriteOnlyCell:
    """A cell that is always text: department data starting with '=' is never a formula."""
    c = WriteOnlyCell(ws, value=ILLEGAL_CHARACTERS_RE.sub("\ufffd", value))
    c.data_type = "s"
    return c


def csv_safe(value: str) -> str:
    """Quote values a spreadsheet would otherwise evaluate as a formula."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def _slug(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name).strip("._") or "rejects"
