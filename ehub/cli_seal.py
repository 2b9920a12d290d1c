"""``ehub seal``: the seal registry (印章库) — register, list, show, suspend,
revoke, resume seals and export their registration (备案) documents.

A thin shell over :mod:`ehub.seals`; heavy imports happen inside the commands
so ``ehub --help`` stays fast.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from ehub.config import Settings
    from ehub.seals import Seal
    from ehub.store.db import Store

console = Console(width=None if Console().is_terminal else 140)

_STATUS_ZH = {"active": "启用", "suspended": "暂停", "revoked": "注销"}
_DATES = click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"])


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


def _when(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else ""


def _as_dict(seal: Seal) -> dict[str, Any]:
    return {
        "code": seal.code,
        "name": seal.name,
        "seal_type": seal.seal_type,
        "department": seal.department,
        "department_uscc": seal.department_uscc,
        "division": seal.division,
        "license_types": list(seal.license_types),
        "cross_level": seal.cross_level,
        "status": seal.status,
        "status_reason": seal.status_reason,
        "suspended_at": _when(seal.suspended_at) or None,
        "revoked_at": _when(seal.revoked_at) or None,
        "valid_from": _when(seal.valid_from),
        "valid_until": _when(seal.valid_until),
        "key_ref": seal.key_ref,
        "image_path": seal.image_path,
        "image_sha256": seal.image_sha256,
        "registration_no": seal.registration_no,
        "registered_at": _when(seal.registered_at) or None,
        "created_at": _when(seal.created_at),
    }


def _type_name(code: str) -> str:
    """``营业执照`` for a known license type code, else the code."""
    from ehub import codelists
    from ehub.errors import RecordError

    try:
        return f"{codelists.load('license_types').zh(code)} {code[-3:]}"
    except RecordError:
        return code


def _status(seal: Seal) -> str:
    colour = {"active": "green", "suspended": "yellow", "revoked": "red"}.get(seal.status, "")
    text = f"{seal.status} {_STATUS_ZH.get(seal.status, '')}"
    return f"[{colour}]{text}[/]" if colour else text


@click.group("seal")
def seal() -> None:
    """The seal registry: which seal seals which department's licenses."""


@seal.command("create")
@click.option("--department", required=True, help="Department name, e.g. 山东省市场监督管理局.")
@click.option("--uscc", "department_uscc", required=True, help="The department's USCC.")
@click.option("--name", required=True, help="Seal name, e.g. 山东省市场监督管理局电子证照专用章.")
@click.option("--division", help="GB/T 2260 division code (default: from the USCC).")
@click.option("--type", "seal_type", default="电子证照专用章", show_default=True)
@click.option(
    "--license-type",
    "license_types",
    multiple=True,
    help="License type code (ZZLXDM) it seals; repeat; none = any type.",
)
@click.option("--code", help="Seal code (印章编码; default: derived from division and USCC).")
@click.option("--cross-level", is_flag=True, help="Also seal for bureaus inside its division.")
@click.option(
    "--cert", "cert_path", type=click.Path(exists=True, path_type=Path), help="Import a PEM cert."
)
@click.option("--chain", "chain_path", type=click.Path(exists=True, path_type=Path))
@click.option("--key-ref", help="With --cert: the key's PKCS#12 path or PKCS#11 URI.")
@click.option("--image", "image_path", type=click.Path(exists=True, path_type=Path))
@click.option("--valid-from", type=_DATES, help="Narrow the validity window (UTC).")
@click.option("--valid-until", type=_DATES, help="Narrow the validity window (UTC).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def create_cmd(
    department: str,
    department_uscc: str,
    name: str,
    division: str | None,
    seal_type: str,
    license_types: tuple[str, ...],
    code: str | None,
    cross_level: bool,
    cert_path: Path | None,
    chain_path: Path | None,
    key_ref: str | None,
    image_path: Path | None,
    valid_from: datetime | None,
    valid_until: datetime | None,
    as_json: bool,
) -> None:
    """Register a seal (the dev PKI issues its certificate unless --cert is given)."""
    from ehub import seals

    with _store() as (settings, store):
        created = seals.create_seal(
            store,
            settings,
            department=department,
            department_uscc=department_uscc,
            name=name,
            division=division,
            seal_type=seal_type,
            license_types=license_types,
            code=code,
            cross_level=cross_level,
            cert_pem=cert_path.read_text(encoding="ascii") if cert_path else None,
            chain_pem=chain_path.read_text(encoding="ascii") if chain_path else None,
            key_ref=key_ref,
            image=image_path.read_bytes() if image_path else None,
            valid_from=valid_from,
            valid_until=valid_until,
        )
    if as_json:
        click.echo(json.dumps(_as_dict(created), ensure_ascii=False, indent=1))
    else:
        console.print(
            f"registered seal [bold]{created.code}[/] {created.name} — {_status(created)}"
        )


@seal.command("list")
@click.option("--uscc", "department_uscc", help="Only seals of this department USCC.")
@click.option("--status", type=click.Choice(["active", "suspended", "revoked"]))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_cmd(department_uscc: str | None, status: str | None, as_json: bool) -> None:
    """Every registered seal."""
    from ehub import seals

    with _store() as (_settings, store):
        found = seals.list_seals(store, department_uscc=department_uscc, status=status)
    if as_json:
        click.echo(json.dumps([_as_dict(x) for x in found], ensure_ascii=False, indent=1))
        return
    table = Table(title="seals 印章")
    for col in ("CODE", "印章名称", "部门", "USCC", "区划", "证照类型", "STATUS", "VALID UNTIL"):
        width = {"CODE": 18, "USCC": 18, "VALID UNTIL": 10}.get(col)
        table.add_column(col, overflow="fold", no_wrap=width is not None, min_width=width)
    for x in found:
        table.add_row(
            x.code,
            x.name,
            x.department,
            x.department_uscc,
            x.division + (" 跨层级" if x.cross_level else ""),
            "\n".join(_type_name(t) for t in x.license_types) or "任意 any",
            _status(x),
            x.valid_until.date().isoformat(),
        )
    console.print(table)
    if not found:
        console.print("no seal matches")


@seal.command("show")
@click.argument("code")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show_cmd(code: str, as_json: bool) -> None:
    """One seal: department, status history, certificate, registration."""
    from ehub import seals

    with _store() as (_settings, store):
        found = seals.get_seal(store, code)
    doc = _as_dict(found)
    reg = seals.export_registration(found, with_image=False)
    doc["certificate"] = {
        k: v for k, v in reg["certificate"].items() if k not in ("pem", "chain_pem")
    }
    if as_json:
        click.echo(json.dumps(doc, ensure_ascii=False, indent=1))
        return
    table = Table(title=f"seal {found.code}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in doc.items():
        if key == "status":
            table.add_row(key, _status(found))
        elif isinstance(value, dict):
            for k, v in value.items():
                table.add_row(f"{key}.{k}", str(v))
        elif isinstance(value, list):
            table.add_row(key, ", ".join(value) or "任意 any")
        else:
            table.add_row(key, "" if value is None else str(value))
    console.print(table)


@seal.command("suspend")
@click.argument("code")
@click.option("--reason", required=True, help="Why (recorded and audited).")
def suspend_cmd(code: str, reason: str) -> None:
    """Stop using a seal until `resume`; its licenses are held."""
    from ehub import seals

    with _store() as (_settings, store):
        done = seals.suspend_seal(store, code, reason)
    console.print(f"seal {done.code} is now {_status(done)}: {reason}")


@seal.command("resume")
@click.argument("code")
@click.option("--reason", default="", help="Why (recorded and audited).")
def resume_cmd(code: str, reason: str) -> None:
    """Use a suspended seal again; held licenses are sealed on the next run."""
    from ehub import seals

    with _store() as (_settings, store):
        done = seals.resume_seal(store, code, reason)
    console.print(f"seal {done.code} is now {_status(done)}")


@seal.command("revoke")
@click.argument("code")
@click.option("--reason", required=True, help="Why (recorded and audited).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def revoke_cmd(code: str, reason: str, yes: bool) -> None:
    """Retire a seal for good (final: register a new seal to replace it)."""
    from ehub import seals

    if not yes:
        click.confirm(f"revoke seal {code} for good?", abort=True)
    with _store() as (_settings, store):
        done = seals.revoke_seal(store, code, reason)
    console.print(f"seal {done.code} is now {_status(done)}: {reason}")


@seal.command("export-registration")
@click.argument("code")
@click.option(
    "--out", "out_path", type=click.Path(path_type=Path), help="Write to this file (else stdout)."
)
@click.option("--no-image", is_flag=True, help="Leave out the base64 seal image.")
def export_cmd(code: str, out_path: Path | None, no_image: bool) -> None:
    """The seal's registration (备案) document for the national platform, as JSON."""
    from ehub import seals

    with _store() as (_settings, store):
        found = seals.get_seal(store, code)
    text = json.dumps(
        seals.export_registration(found, with_image=not no_image), ensure_ascii=False, indent=1
    )
    if out_path is None:
        click.echo(text)
        return
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(text + "\n", encoding="utf-8")
    console.print(f"registration of {code} written to {out_path}")


@seal.command("record-registration")
@click.argument("code")
@click.argument("registration_no")
def record_cmd(code: str, registration_no: str) -> None:
    """Record the registration number (备案号) the national platform gave the seal."""
    from ehub import seals

    with _store() as (_settings, store):
        done = seals.record_registration(store, code, registration_no)
    console.print(f"seal {done.code} registered as {done.registration_no}")
