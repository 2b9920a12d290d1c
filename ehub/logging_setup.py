"""Log output of the hub's processes: JSON lines for the log shippers, and masking.

:func:`configure` installs one handler on the root logger, writing either the
classic text line or (``fmt="json"``, ``EHUB_LOG_FORMAT=json`` in the
deployment) one JSON object per line::

    {"ts": "2026-11-22T08:00:00.123Z", "level": "WARNING", "logger": "ehub.pipeline.deliver",
     "message": "...", "source": "market_regulation.business_licenses", "identifier": "...",
     "version": 2}

Record identifiers travel in ``extra`` — ``log.info("sealed", extra={"identifier": i,
"version": v})`` — and become fields of their own (:data:`IDENTIFIER_FIELDS`, an
allow-list: other ``extra`` keys are not written, so an object that happens to be
passed there cannot leak into the logs).

:class:`MaskingFilter` is the last line of defence for personal data: the hub's
code never logs names, ID numbers or phone numbers (STYLE.md), and this filter
masks any 18-character citizen ID number (GB 11643) and mainland mobile number
left in a message, an identifier field or a traceback, with the same masking as
the return feeds (:mod:`ehub.masking`: region and last four of an ID number,
138****5678). Names cannot be told from other text by a pattern; they are kept
out of log calls at the source. :func:`install_masking` puts the filter on the
handlers that some other framework (Airflow's task logging) configured.

Must not: write anywhere but the handler's stream, or swallow a log record.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import IO, Any, Literal

from ehub.masking import mask_id_number, mask_phone

LogFormat = Literal["text", "json"]

#: ``extra`` keys written as fields of a JSON line.
IDENTIFIER_FIELDS = (
    "source",
    "identifier",
    "version",
    "office",
    "destination",
    "stage",
    "kind",
    "raw_id",
    "dag_id",
    "task_id",
    "run_id",
)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# A citizen ID number: 17 digits and a check character, not inside a longer token
# (an 18-digit run inside a 24-character hash or a USCC with letters is not one).
_ID_NUMBER = re.compile(r"(?<![0-9A-Za-z])\d{17}[0-9Xx](?![0-9A-Za-z])")
# A mainland mobile number, optionally after +86 / 86: 1[3-9] and nine digits.
_MOBILE = re.compile(r"(?<![0-9A-Za-z])((?:\+?86[- ]?)?)(1[3-9]\d{9})(?!\d)")

_HANDLER_MARK = "_ehub_handler"


def mask_text(text: str) -> str:
    """``text`` with every ID number and mobile number in it masked."""
    if not any(c.isdigit() for c in text):
        return text
    text = _ID_NUMBER.sub(lambda m: mask_id_number(m.group(0)), text)
    return _MOBILE.sub(lambda m: m.group(1) + mask_phone(m.group(2)), text)


class MaskingFilter(logging.Filter):
    """Masks personal-data patterns in a record before any handler formats it.

    The message is rendered (``msg % args``) and masked, so an ID number passed as
    an argument is caught too; identifier fields and the exception text likewise.
    Returns ``True`` always: a record is masked, never dropped.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_ehub_masked", False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: keep it as the logging module would
            return True
        record.msg, record.args = mask_text(message), None
        for key in IDENTIFIER_FIELDS:
            value = getattr(record, key, None)
            if isinstance(value, str):
                setattr(record, key, mask_text(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_text(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_text(record.stack_info)
        setattr(record, "_ehub_masked", True)  # noqa: B010 - not a LogRecord attribute
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, the identifier fields,
    and ``exception`` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }  # fmt: skip
        for key in IDENTIFIER_FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                out[key] = value if isinstance(value, int | float | bool) else str(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        return json.dumps(out, ensure_ascii=False, default=str)


def make_handler(fmt: LogFormat = "text", stream: IO[str] | None = None) -> logging.Handler:
    """A stream handler with the masking filter and the chosen format."""
    if fmt not in ("text", "json"):
        raise ValueError(f"log format must be 'text' or 'json', got {fmt!r} (EHUB_LOG_FORMAT)")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(MaskingFilter())
    setattr(handler, _HANDLER_MARK, True)
    return handler


def configure(
    level: int = logging.WARNING,
    fmt: str = "text",
    *,
    stream: IO[str] | None = None,
    force: bool = False,
) -> None:
    """Set up the root logger like :func:`logging.basicConfig`, with masking.

    As ``basicConfig``, it leaves a root logger that already has handlers alone
    (a host such as Airflow or pytest configured it) unless ``force``; the
    masking filter is added to those handlers all the same.
    """
    if fmt not in ("", "text", "json"):
        raise ValueError(f"log format must be 'text' or 'json', got {fmt!r} (EHUB_LOG_FORMAT)")
    root = logging.getLogger()
    if root.handlers and not force:
        install_masking(root)
        return
    for old in list(root.handlers):
        root.removeHandler(old)
        if getattr(old, _HANDLER_MARK, False):
            old.close()
    root.addHandler(make_handler("json" if fmt == "json" else "text", stream))
    root.setLevel(level)


def install_masking(logger: logging.Logger | None = None) -> None:
    """Add :class:`MaskingFilter` to every handler of ``logger`` (default: root) that
    has none yet — for handlers another framework installed."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, MaskingFilter) for f in handler.filters):
            handler.addFilter(MaskingFilter())
