"""``ehub hsm``: the development PKCS#11 token (SoftHSM2) that holds a seal key.

``init`` provisions it under ``<home>/hsm`` (key generated on the token,
certificate issued by the dev PKI in ``<home>/pki``); ``show`` lists what is
on it. PINs are stored in ``<home>/hsm`` (mode 0600) and never printed.
"""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

console = Console(width=None if Console().is_terminal else 140)


def _home_dirs(directory: Path | None) -> tuple[Path, Path]:
    from ehub.config import Settings

    home = Settings.from_env().home
    return (directory or home / "hsm"), home / "pki"


@click.group()
def hsm() -> None:
    """The development PKCS#11 token (SoftHSM2) holding a seal key."""


@hsm.command("init")
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    help="Token directory (default: <home>/hsm).",
)
@click.option("--token-label", default="ehub-dev-seal", show_default=True)
@click.option("--key-label", default="ehub-seal", show_default=True)
def hsm_init(directory: Path | None, token_label: str, key_label: str) -> None:
    """Provision the dev token (idempotent: a second run reuses it)."""
    from signing.pki import ensure_dev_pki
    from signing.softhsm import ensure_softhsm_token

    token_dir, pki_dir = _home_dirs(directory)
    token = ensure_softhsm_token(
        token_dir, ensure_dev_pki(pki_dir), token_label=token_label, key_label=key_label
    )
    cert = token.certificate()
    console.print(f"token label:  {token.token_label}")
    console.print(f"key label:    {token.key_label} (id {token.key_id.hex()})")
    console.print(f"certificate:  {cert.subject.rfc4514_string()}")
    console.print(f"serial:       {cert.serial_number:x}")
    console.print(f"issuer:       {cert.issuer.rfc4514_string()}")
    console.print(f"directory:    {token.directory}")
    console.print(f"key_ref:      {token.key_ref().uri()}", soft_wrap=True)


@hsm.command("show")
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    help="Token directory (default: <home>/hsm).",
)
@click.option("--token-label", default="ehub-dev-seal", show_default=True)
def hsm_show(directory: Path | None, token_label: str) -> None:
    """Token information and objects; checks the private keys cannot leave it."""
    from signing.softhsm import describe_token

    token_dir, _ = _home_dirs(directory)
    info, objects = describe_token(token_dir, token_label=token_label)
    for name, value in info.items():
        console.print(f"{name + ':':14}{value}")
    table = Table(title="objects")
    for column in ("class", "label", "id", "sensitive", "extractable"):
        table.add_column(column)
    for obj in objects:
        table.add_row(
            obj.kind,
            obj.label,
            obj.key_id,
            "" if obj.sensitive is None else str(obj.sensitive).lower(),
            "" if obj.extractable is None else str(obj.extractable).lower(),
        )
    console.print(table)
    for obj in objects:
        if obj.kind != "private key":
            continue
        if obj.sensitive and not obj.extractable and obj.never_extractable:
            console.print(
                f"private key {obj.label!r}: sensitive, non-extractable "
                "(always sensitive, never extractable)"
            )
        else:
            console.print(f"[red]private key {obj.label!r} can leave the token[/]")
