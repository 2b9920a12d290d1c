"""``ehub api-client``: the issuing systems allowed to post licenses (on-demand sealing).

A thin shell over :mod:`ehub.api_clients`. The token is printed once, at
creation; the hub keeps only its SHA-256.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from ehub.store.db import Store

console = Console(width=None if Console().is_terminal else 140)


def _store() -> Store:
    from ehub.config import Settings
    from ehub.store.db import Store

    store = Store(Settings.from_env().database_url)
    store.migrate()
    return store


@click.group("api-client")
def api_client() -> None:
    """Clients of the on-demand sealing API (POST /v1/sources/<source>/licenses)."""


@api_client.command()
@click.argument("name")
@click.option("--department-uscc", required=True, help="USCC the client's licenses are issued by.")
@click.option("--source", "sources", multiple=True, required=True,
              help="API source id it may post to (repeatable).")  # fmt: skip
@click.option("--token-only", is_flag=True, help="Print only the token (for scripts).")
def create(name: str, department_uscc: str, sources: tuple[str, ...], token_only: bool) -> None:
    """Register a client and print its bearer token (shown this once)."""
    from ehub.api_clients import ApiClientError, create_client
    from ehub.errors import SpecError

    store = _store()
    try:
        info, token = create_client(store, name, department_uscc, sources)
    except (ApiClientError, SpecError) as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        store.dispose()
    if token_only:
        click.echo(token)
        return
    console.print(f"API client [bold]{info.name}[/] for {info.department_uscc}, "
                  f"may post to {', '.join(info.source_ids)}")  # fmt: skip
    console.print("token (shown once, keep it in the issuing system's secret store):")
    click.echo(token)


@api_client.command("list")
def list_() -> None:
    """Every client, active or revoked (tokens are never shown)."""
    from ehub.api_clients import list_clients

    store = _store()
    try:
        clients = list_clients(store)
    finally:
        store.dispose()
    table = Table(title="API clients")
    for col in ("name", "department", "sources", "token", "created", "state"):
        table.add_column(col)
    for c in clients:
        table.add_row(c.name, c.department_uscc, ", ".join(c.source_ids), c.token_hint + "…",
                      c.created_at.strftime("%Y-%m-%d %H:%M"),
                      "active" if c.active else f"revoked {c.revoked_at:%Y-%m-%d %H:%M}")  # fmt: skip
    console.print(table)


@api_client.command()
@click.argument("name")
def revoke(name: str) -> None:
    """Revoke a client: its token is refused from the next request."""
    from ehub.api_clients import ApiClientError, revoke_client

    store = _store()
    try:
        info = revoke_client(store, name)
    except ApiClientError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        store.dispose()
    console.print(f"API client {info.name} revoked")
