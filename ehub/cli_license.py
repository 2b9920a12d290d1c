"""``ehub license``: revoke or cancel a license at the hub, and show its versions.

A thin shell over :mod:`ehub.licenses`. The change becomes a new version that
the seal, delivery and return-feed stages carry at their next run.
"""

from __future__ import annotations

import getpass
import json

import click
from rich.console import Console
from rich.table import Table

console = Console(width=None if Console().is_terminal else 140)


def _change(identifier: str, status: str, reason: str, actor: str | None) -> None:
    from ehub.config import Settings
    from ehub.licenses import LicenseChangeError, change_status
    from ehub.records import LicenseStatus
    from ehub.store.db import Store

    store = Store(Settings.from_env().database_url)
    try:
        change = change_status(
            store,
            identifier,
            LicenseStatus(status),
            reason=reason,
            actor=actor or getpass.getuser(),
        )
    except LicenseChangeError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        store.dispose()
    console.print(
        f"license {change.identifier}: version {change.new_version} records status "
        f"[bold]{change.new_status}[/] (was {change.old_status} in version {change.old_version}); "
        "the seal, delivery and return-feed stages carry it at their next run"
    )


@click.group("license")
def license_() -> None:
    """Status changes of licenses made at the hub (revocation 吊销, cancellation 注销)."""


@license_.command()
@click.argument("identifier")
@click.option("--reason", required=True, help="Why (audited, reported to the platforms).")
@click.option("--actor", default=None, help="Who decided it (default: the OS user).")
def revoke(identifier: str, reason: str, actor: str | None) -> None:
    """Revoke (吊销) the license IDENTIFIER: a new version with status revoked."""
    _change(identifier, "revoked", reason, actor)


@license_.command()
@click.argument("identifier")
@click.option("--reason", required=True, help="Why (audited, reported to the platforms).")
@click.option("--actor", default=None, help="Who decided it (default: the OS user).")
def cancel(identifier: str, reason: str, actor: str | None) -> None:
    """Cancel (注销) the license IDENTIFIER: a new version with status cancelled."""
    _change(identifier, "cancelled", reason, actor)


@license_.command()
@click.argument("identifier")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show(identifier: str, as_json: bool) -> None:
    """Every version of the license IDENTIFIER with its status and pipeline state."""
    from ehub.config import Settings
    from ehub.licenses import history
    from ehub.store.db import Store

    store = Store(Settings.from_env().database_url)
    try:
        versions = history(store, identifier)
    finally:
        store.dispose()
    if not versions:
        raise click.ClickException(f"license {identifier}: not in the hub store")
    if as_json:
        click.echo(json.dumps(versions, ensure_ascii=False, indent=2))
        return
    table = Table(title=f"证照 {identifier}")
    for col in ("版本", "状态", "处理阶段", "原因", "来源版本", "入库时间"):
        table.add_column(col)
    for v in versions:
        table.add_row(
            str(v["version"]), v["status"], v["state"], v["state_reason"],
            v["source_version"], v["created_at"],
        )  # fmt: skip
    console.print(table)
