"""Field-level parsing helpers shared by normalizers; each raises a RecordError
that names the field, a reason code and a bilingual message."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from ehub.errors import RecordError

_DATE_PATTERNS = (
    re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$"),
    re.compile(r"^(\d{4})(\d{2})(\d{2})$"),
    re.compile(r"^(\d{4})/(\d{1,2})/(\d{1,2})$"),
    re.compile(r"^(\d{4})年(\d{1,2})月(\d{1,2})日$"),
)

LONG_TERM = {"长期", "永久", "长期有效", "9999-12-31"}


def text(payload: dict[str, Any], column: str, field: str, *, max_len: int = 200) -> str:
    """Trimmed text of a required column (E_REQUIRED_MISSING / E_FIELD_TOO_LONG)."""
    s = optional_text(payload, column, field, max_len=max_len)
    if not s:
        raise RecordError(
            "E_REQUIRED_MISSING",
            field,
            f"required field {field} (column {column}) is empty",
            f"必填字段 {field}（源字段 {column}）为空",
        )
    return s


def optional_text(payload: dict[str, Any], column: str, field: str, *, max_len: int = 4000) -> str:
    """Trimmed text of a column, empty when absent (E_FIELD_TOO_LONG)."""
    value = payload.get(column)
    s = "" if value is None else str(value).strip()
    if len(s) > max_len:
        raise RecordError(
            "E_FIELD_TOO_LONG",
            field,
            f"{field} is {len(s)} characters, limit {max_len}",
            f"{field} 长度 {len(s)} 超过上限 {max_len}",
            value=s[:50],
        )
    return s


def parse_date(value: Any, field: str) -> date:
    """A calendar date in one of the formats seen in department systems (E_DATE_INVALID)."""
    s = "" if value is None else str(value).strip()
    if " " in s:  # a timestamp: keep its date part
        s = s.split(" ", 1)[0]
    for pattern in _DATE_PATTERNS:
        m = pattern.match(s)
        if m:
            y, mo, d = (int(g) for g in m.groups())
            try:
                return date(y, mo, d)
            except ValueError:
                break
    raise RecordError(
        "E_DATE_INVALID",
        field,
        f"{field} is not a valid date: {s!r}",
        f"{field} 不是有效日期：{s!r}",
        value=s,
    )


def parse_until(value: Any, field: str) -> date | None:
    """End of a validity window; None for long-term (长期)."""
    s = "" if value is None else str(value).strip()
    if not s or s in LONG_TERM:
        return None
    return parse_date(s, field)
