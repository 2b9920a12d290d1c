"""``ehub trace`` and ``ehub audit``: the story of a record, and proving the audit
chain intact (verify) or pinning it (checkpoint).

A thin shell over :mod:`ehub.lineage`, :mod:`ehub.audit_verify` and
:mod:`ehub.audit_checkpoint`; heavy imports happen inside the commands so
``ehub --help`` stays fast. Traces print identifiers, states, codes and times;
personal data is masked by :mod:`ehub.lineage`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from ehub.config import Settings
    from ehub.store.db import Store

console = Console(width=None if Console().is_terminal else 140)


@contextmanager
def _store() -> Iterator[tuple[Settings, Store]]:
    from ehub.config import Settings
    from ehub.store.db import Store

    settings = Settings.from_env()
    store = Store(settings.database_url)
    try:
        yield settings, store
    finally:
        store.dispose()


def _brief(detail: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in detail.items() if v not in (None, "", [], {}))


@click.command("trace")
@click.argument("identifier")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def trace(identifier: str, as_json: bool) -> None:
    """The whole story of a license identifier, case number, seal code or <source>/<key>."""
    from ehub.lineage import trace as trace_record

    with _store() as (_settings, store):
        story = trace_record(store, identifier)
    if as_json:
        click.echo(json.dumps(story.as_dict(), ensure_ascii=False, indent=2))
    if not story.found:
        raise click.ClickException(f"{identifier}: no record and no audit event has this name")
    if as_json:
        return
    console.print(f"[bold]{story.kind}[/] {story.identifier}: {len(story.versions)} version(s)")
    for v in story.versions:
        title = f"version {v.version}" if v.version is not None else story.identifier
        if v.facts:
            facts = {k: val for k, val in v.facts.items() if k != "signatures"}
            console.print(f"[bold]{title}[/] {_brief(facts)}")
        table = Table(title=title)
        for col in ("WHEN", "STEP", "DETAIL", "AUDIT ROW"):
            table.add_column(col, overflow="fold")
        for st in v.steps:
            table.add_row(st.at, st.step, _brief(st.detail), str(st.audit_row or ""))
        console.print(table)
        if v.deliveries:
            dt = Table(title=f"{title}: deliveries")
            for col in ("DESTINATION", "STATE", "RECEIPT", "ATTEMPTS", "DELIVERED", "ERROR"):
                dt.add_column(col, overflow="fold")
            for d in v.deliveries:
                dt.add_row(
                    d["destination"],
                    d["state"],
                    d["receipt"] or "",
                    str(d["attempts"]),
                    d["delivered_at"],
                    d["error"] or "",
                )
            console.print(dt)
        if v.feeds:
            ft = Table(title=f"{title}: returned on feeds")
            for col in ("TOPIC", "STATE", "PARTITION", "OFFSET", "PUBLISHED"):
                ft.add_column(col, overflow="fold")
            for f in v.feeds:
                ft.add_row(
                    f["topic"],
                    f["state"],
                    str(f["partition"] if f["partition"] is not None else ""),
                    str(f["offset"] if f["offset"] is not None else ""),
                    f["published_at"],
                )
            console.print(ft)


@click.group("audit")
def audit() -> None:
    """The tamper-evident audit chain: verify it, checkpoint it."""


@audit.command("verify")
@click.option(
    "--trust-root",
    "trust_roots",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="PEM certificate checkpoint signatures and timestamps must chain to "
    "(repeatable; default: the dev PKI's root).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def verify_cmd(ctx: click.Context, trust_roots: tuple[Path, ...], as_json: bool) -> None:
    """Check every row's hash and link and every checkpoint; exit 1 listing problems by row."""
    from ehub.audit_checkpoint import dev_trust_roots
    from ehub.audit_verify import verify_audit

    with _store() as (settings, store):
        report = verify_audit(store, trust_roots=list(trust_roots) or dev_trust_roots(settings))
    if as_json:
        click.echo(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
    else:
        console.print(
            f"{report.rows} rows, {report.checkpoints} checkpoint(s) "
            f"({report.timestamped} timestamped), {report.uncovered} row(s) not yet covered"
        )
        for w in report.warnings:
            console.print(f"[yellow]warning:[/] {w}")
        if report.problems:
            table = Table(title="audit chain problems")
            for col in ("ROW", "KIND", "PROBLEM"):
                table.add_column(col, overflow="fold")
            for p in report.problems:
                table.add_row(str(p.row_id), p.kind, p.message)
            console.print(table)
        else:
            console.print("[green]audit chain intact[/]")
    if not report.ok:
        ctx.exit(1)


@audit.command("checkpoint")
@click.option("--tsa-url", help="RFC 3161 TSA (default: the dev PKI's).")
@click.option("--no-timestamp", is_flag=True, help="Sign only; do not ask a TSA.")
def checkpoint_cmd(tsa_url: str | None, no_timestamp: bool) -> None:
    """Sign (and timestamp) the chain as it stands; the checkpoint joins the chain."""
    from ehub.audit_checkpoint import make_checkpoint

    with _store() as (settings, store):
        cp = make_checkpoint(settings, store, tsa_url="" if no_timestamp else tsa_url)
    console.print(
        f"checkpoint row {cp.row_id}: {cp.count} rows up to row {cp.last_id}, "
        + (
            f"timestamped {cp.timestamp.isoformat()}"
            if cp.timestamp
            else "[yellow]untimestamped[/]"
        )
    )
