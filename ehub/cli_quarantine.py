"""``ehub quarantine``: list, show, count and retry quarantined records, and write
the rejects report a department gets back.

A thin shell over :mod:`ehub.quarantine` and :mod:`ehub.reports`; heavy imports
happen inside the commands so ``ehub --help`` stays fast. Personal data stays
masked unless ``--reveal`` is given.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import click
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from ehub.store.db import Store

console = Console()

_STATE_CHOICES = ["open", "retried", "resolved", "all"]


@contextmanager
def _store() -> Iterator[Store]:
    from ehub.config import Settings
    from ehub.store.db import Store

    store = Store(Settings.from_env().database_url)
    try:
        yield store
    finally:
        store.dispose()


def _state(value: str) -> Any:
    return None if value == "all" else value


@click.group("quarantine")
def quarantine() -> None:
    """Records the hub rejected: why, what to fix, and re-processing them."""


@quarantine.command("list")
@click.option("--source", help="Only this source id.")
@click.option("--department", help="Only sources of this department.")
@click.option("--reason", help="Only this reason code (e.g. E_USCC_CHECK).")
@click.option("--state", type=click.Choice(_STATE_CHOICES), default="open", show_default=True)
@click.option(
    "--since",
    type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]),
    help="Quarantined at or after (UTC).",
)
@click.option("--after", default=0, show_default=True, help="Rows after this quarantine id.")
@click.option("--limit", default=50, show_default=True, help="Rows per page.")
@click.option("--reveal", is_flag=True, help="Show personal data unmasked.")
def list_cmd(
    source: str | None,
    department: str | None,
    reason: str | None,
    state: str,
    since: datetime | None,
    after: int,
    limit: int,
    reveal: bool,
) -> None:
    """One row per defect; RAW is the record id for `show` and `retry`."""
    from ehub import quarantine as q

    with _store() as store:
        page = q.list_entries(
            store,
            source=source,
            department=department,
            reason=reason,
            state=_state(state),
            since=since,
            after=after,
            limit=limit,
            reveal=reveal,
        )
    table = Table(title=f"quarantine ({state})")
    for col in ("ID", "RAW", "SOURCE", "KEY", "FIELD", "REASON", "原因", "VALUE", "STATE"):
        table.add_column(col, overflow="fold")
    for e in page.entries:
        table.add_row(
            str(e.id),
            str(e.raw_id),
            e.source_id,
            e.source_key,
            e.field,
            e.reason_code,
            e.message_zh,
            e.value or "",
            e.state,
        )
    console.print(table)
    if page.next_after is not None:
        console.print(f"next page: --after {page.next_after}")
    elif not page.entries:
        console.print("no quarantined records match")


@quarantine.command("show")
@click.argument("raw_id", type=int)
@click.option("--reveal", is_flag=True, help="Show personal data unmasked.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def show_cmd(raw_id: int, reveal: bool, as_json: bool) -> None:
    """One quarantined raw record: its errors, payload and history."""
    from ehub import quarantine as q

    with _store() as store:
        rec = q.show(store, raw_id, reveal=reveal)
    if rec is None:
        raise click.ClickException(f"raw record {raw_id} is not in the quarantine")
    if as_json:
        doc = {
            "raw_id": rec.raw_id,
            "source": rec.source_id,
            "department": rec.department,
            "source_key": rec.source_key,
            "state": rec.state,
            "errors": [
                {
                    "reason_code": e.reason_code,
                    "field": e.field,
                    "message_zh": e.message_zh,
                    "message_en": e.message_en,
                    "value": e.value,
                    "state": e.state,
                    "fix_zh": e.fix_zh,
                    "fix_en": e.fix_en,
                }
                for e in rec.errors
            ],
            "payload": dict(rec.payload),
            "history": [
                {"at": h.at.isoformat(), "event": h.event, "detail": dict(h.detail)}
                for h in rec.history
            ],
        }
        click.echo(json.dumps(doc, ensure_ascii=False, indent=1, default=str))
        return
    console.print(
        f"[bold]raw {rec.raw_id}[/] {rec.source_id} ({rec.department}) "
        f"key {rec.source_key} version {rec.source_version} — {rec.state}"
    )
    errors = Table(title="errors")
    for col in ("FIELD", "REASON", "原因", "VALUE", "STATE", "修改建议"):
        errors.add_column(col, overflow="fold")
    for e in rec.errors:
        errors.add_row(e.field, e.reason_code, e.message_zh, e.value or "", e.state, e.fix_zh)
    console.print(errors)
    console.print_json(json.dumps(dict(rec.payload), ensure_ascii=False, default=str))
    history = Table(title="history")
    for col in ("AT", "EVENT", "DETAIL"):
        history.add_column(col, overflow="fold")
    for h in rec.history:
        history.add_row(
            h.at.isoformat(timespec="seconds"),
            h.event,
            json.dumps(dict(h.detail), ensure_ascii=False),
        )
    console.print(history)


@quarantine.command("counts")
@click.option("--source", help="Only this source id.")
@click.option("--department", help="Only sources of this department.")
@click.option("--state", type=click.Choice(_STATE_CHOICES), default="open", show_default=True)
def counts_cmd(source: str | None, department: str | None, state: str) -> None:
    """Records and defects per source and reason code."""
    from ehub import quarantine as q

    table = Table(title=f"quarantine counts ({state})")
    for col in ("SOURCE", "DEPARTMENT", "REASON", "RECORDS", "ROWS"):
        table.add_column(col, overflow="fold")
    with _store() as store:
        found = q.counts(store, source=source, department=department, state=_state(state))
    for c in found:
        table.add_row(c.source_id, c.department, c.reason_code, str(c.records), str(c.rows))
    console.print(table)


@quarantine.command("retry")
@click.argument("raw_ids", nargs=-1, type=int)
@click.option("--source", help="Only records of this source id.")
@click.option("--reason", help="Only records with an open defect of this reason code.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def retry_cmd(raw_ids: tuple[int, ...], source: str | None, reason: str | None, yes: bool) -> None:
    """Send quarantined records (RAW ids and/or --source/--reason) back to normalize."""
    from ehub import quarantine as q

    with _store() as store:
        preview = q.retry(store, raw_ids=raw_ids, source=source, reason=reason, dry_run=True)
        if preview.records == 0:
            console.print("nothing to retry: no quarantined record with an open defect matches")
            return
        if not yes:
            click.confirm(
                f"Retry {preview.records} records ({preview.rows} open defects)?", abort=True
            )
        done = q.retry(store, raw_ids=raw_ids, source=source, reason=reason, actor=_actor())
    console.print(
        f"retried {done.records} records ({done.rows} defects); "
        "the next normalize run re-processes them"
    )


@quarantine.command("report")
@click.option("--department", help="Every source of this department.")
@click.option("--source", help="One source id.")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the report files.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "xlsx", "both"]),
    default="both",
    show_default=True,
)
def report_cmd(department: str | None, source: str | None, out_dir: Path, fmt: str) -> None:
    """Write the rejects report (CSV and/or XLSX, Chinese headers) for a department."""
    from ehub.reports import FORMATS, ReportFormat, ReportScope, write_rejects_report

    if (department is None) == (source is None):
        raise click.UsageError("give exactly one of --department or --source")
    formats: tuple[ReportFormat, ...] = FORMATS if fmt == "both" else (cast("ReportFormat", fmt),)
    with _store() as store:
        scope = ReportScope(department=department, source=source)
        paths = write_rejects_report(store, scope, out_dir, formats)
    for p in paths:
        console.print(f"wrote {p}")


def _actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in containers without a passwd entry
        return ""
