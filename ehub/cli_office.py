"""``ehub office``: the grassroots offices that receive the records of their jurisdiction.

A thin shell over :mod:`ehub.offices`. A credential is printed once, at
creation; the hub keeps only its SHA-256.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar, cast

import click
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from cryptography import x509

    from connectors.tls import ClientTls
    from ehub.offices import DeliveryMode, MaskMethod, Office, RecordKind
    from ehub.store.db import Store

console = Console(width=None if Console().is_terminal else 140)
T = TypeVar("T")

_KIND = click.Choice(["license", "case"])
_DELIVERY = click.Choice(["kafka", "pull", "file"])


def _store() -> Store:
    from ehub.config import Settings
    from ehub.store.db import Store

    store = Store(Settings.from_env().database_url)
    store.migrate()
    return store


def _with_store(fn: Callable[[Store], T]) -> T:
    from ehub.offices import OfficeError

    store = _store()
    try:
        return fn(store)
    except OfficeError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        store.dispose()


def _pairs(values: Iterable[str], option: str) -> list[tuple[str, str]]:
    out = []
    for v in values:
        key, sep, rest = v.partition("=")
        if not sep or not key.strip() or not rest.strip():
            raise click.BadParameter(f"{v!r}: expected KEY=VALUE", param_hint=option)
        out.append((key.strip(), rest.strip()))
    return out


def _fields(values: Iterable[str]) -> dict[RecordKind, list[str]]:
    out: dict[RecordKind, list[str]] = {}
    for kind, codes in _pairs(values, "--fields"):
        if kind not in ("license", "case"):
            raise click.BadParameter(f"{kind!r} is not license or case", param_hint="--fields")
        out.setdefault(cast("RecordKind", kind), []).extend(
            c.strip() for c in codes.split(",") if c.strip()
        )
    return out


def _masking(values: Iterable[str]) -> dict[str, MaskMethod]:
    return {k: cast("MaskMethod", v) for k, v in _pairs(values, "--mask")}


_fields_opt = click.option(
    "--fields", "fields", multiple=True, metavar="KIND=F1,F2",
    help="Fields the office may see, per kind (repeatable): license=ZZBS,ZZMC,KZ_ZS; "
         "* = every field, KZ = every surface field.",
)  # fmt: skip
_mask_opt = click.option(
    "--mask", "masks", multiple=True, metavar="FIELD=METHOD",
    help="Masking of a field (repeatable): name | id_number | phone | address | none. "
         "Overrides the hub's default (people's names and ID numbers masked).",
)  # fmt: skip
_type_opt = click.option("--type", "types", multiple=True, metavar="ZZLXDM",
                         help="License type code it receives (repeatable; none = every type).")  # fmt: skip


@click.group("office")
def office() -> None:
    """Grassroots offices receiving the records of their jurisdiction (return feeds)."""


@office.command()
@click.argument("code")
@click.option("--name", required=True, help="The office's Chinese name.")
@click.option("--division", required=True,
              help="Prefecture (370600), county (370602) or township (370602001) code.")  # fmt: skip
@click.option("--level", type=click.Choice(["city", "county", "township"]),
              help="Checked against the division (derived from it when omitted).")  # fmt: skip
@click.option("--kind", "kinds", type=_KIND, multiple=True, required=True,
              help="Record kind it receives (repeatable).")  # fmt: skip
@_type_opt
@_fields_opt
@_mask_opt
@click.option("--include-children/--no-include-children", default=False, show_default=True,
              help="Also receive the records of its sub-divisions.")  # fmt: skip
@click.option("--delivery", "deliveries", type=_DELIVERY, multiple=True,
              help="How it receives (repeatable; default pull).")  # fmt: skip
@click.option("--token-only", is_flag=True, help="Print only the credential (for scripts).")
def add(
    code: str,
    name: str,
    division: str,
    level: str | None,
    kinds: tuple[str, ...],
    types: tuple[str, ...],
    fields: tuple[str, ...],
    masks: tuple[str, ...],
    include_children: bool,
    deliveries: tuple[str, ...],
    token_only: bool,
) -> None:
    """Register an office and print its credential (shown this once)."""
    from ehub.offices import OfficeLevel, add_office

    scopes = _fields(fields)
    info, token = _with_store(
        lambda store: add_office(
            store, code, name, division,
            level=cast("OfficeLevel | None", level),
            kinds=cast("tuple[RecordKind, ...]", kinds),
            fields=scopes,
            license_types=types,
            include_children=include_children,
            masking=_masking(masks),
            delivery=cast("tuple[DeliveryMode, ...]", deliveries or ("pull",)),
        )
    )  # fmt: skip
    if token_only:
        click.echo(token)
        return
    console.print(f"office [bold]{info.code}[/] {info.name} ({info.level} {info.division})")
    console.print("credential (shown once, hand it to the office over a safe channel):")
    click.echo(token)


def _state(o: Office) -> str:
    return "active" if o.active else f"revoked {o.revoked_at:%Y-%m-%d %H:%M}"


@office.command("list")
@click.option("--active", is_flag=True, help="Only offices not revoked.")
def list_(active: bool) -> None:
    """Every office (credentials are never shown)."""
    from ehub.offices import list_offices

    offices = _with_store(lambda store: list_offices(store, include_revoked=not active))
    table = Table(title="offices")
    for col in ("code", "name", "division", "level", "kinds", "children", "delivery", "state"):
        table.add_column(col)
    for o in offices:
        table.add_row(o.code, o.name, o.division, o.level, ", ".join(sorted(o.kinds)),
                      "yes" if o.include_children else "no", ", ".join(sorted(o.delivery)),
                      _state(o))  # fmt: skip
    console.print(table)


@office.command()
@click.argument("code")
def show(code: str) -> None:
    """One office's grants, field scopes, masking and credentials (hints only)."""
    from ehub.divisions import lookup
    from ehub.offices import get_office

    o = _with_store(lambda store: get_office(store, code))
    d = lookup(o.division)
    console.print(f"[bold]{o.code}[/] {o.name}")
    lines = [
        ("division", f"{o.division} {d.name if d else ''}".rstrip()),
        ("level", o.level),
        ("include children", "yes" if o.include_children else "no"),
        ("kinds", ", ".join(sorted(o.kinds))),
        ("license types", ", ".join(sorted(o.license_types)) or "(every type)"),
        *((f"fields.{k}", ", ".join(sorted(v))) for k, v in sorted(o.fields.items())),
        ("masking", ", ".join(f"{k}={v}" for k, v in sorted(o.masking.items()))
         or "(hub default)"),
        ("delivery", ", ".join(sorted(o.delivery))),
        ("credentials", ", ".join(h + "…" for h in o.credential_hints) or "(none active)"),
        ("state", _state(o)),
    ]  # fmt: skip
    for k, v in lines:
        console.print(f"  {k + ':':<18} {v}", highlight=False)


@office.command("grant")
@click.argument("code")
@click.option("--kind", "kinds", type=_KIND, multiple=True, help="Record kind to add.")
@_type_opt
@_fields_opt
@_mask_opt
@click.option("--include-children/--no-include-children", default=None,
              help="Set whether it receives its sub-divisions' records.")  # fmt: skip
@click.option("--delivery", "deliveries", type=_DELIVERY, multiple=True,
              help="Delivery mode to add.")  # fmt: skip
def grant_(
    code: str,
    kinds: tuple[str, ...],
    types: tuple[str, ...],
    fields: tuple[str, ...],
    masks: tuple[str, ...],
    include_children: bool | None,
    deliveries: tuple[str, ...],
) -> None:
    """Widen an office's grants (kinds, types, fields, delivery) or set its masking."""
    from ehub.offices import grant

    scopes = _fields(fields)
    o = _with_store(
        lambda store: grant(
            store, code,
            kinds=cast("tuple[RecordKind, ...]", kinds),
            license_types=types,
            fields=scopes,
            masking=_masking(masks),
            include_children=include_children,
            delivery=cast("tuple[DeliveryMode, ...]", deliveries),
        )
    )  # fmt: skip
    console.print(f"office {o.code}: kinds {', '.join(sorted(o.kinds))}; "
                  + "; ".join(f"{k} fields {', '.join(sorted(v))}"
                              for k, v in sorted(o.fields.items())))  # fmt: skip


@office.command()
@click.argument("code")
@click.option("--credential", metavar="HINT",
              help="Revoke only this credential (its hint, as `office show` prints it).")  # fmt: skip
def revoke(code: str, credential: str | None) -> None:
    """Revoke an office (and all its credentials) or one credential."""
    from ehub.offices import revoke as revoke_office

    hint = credential.rstrip("…") if credential else None
    o = _with_store(lambda store: revoke_office(store, code, credential=hint))
    if hint:
        console.print(f"office {o.code}: credential {hint}… revoked")
    else:
        console.print(f"office {o.code} revoked with all its credentials")


@office.command()
@click.option("--office", "code", required=True, help="The office's code.")
@click.option("--since", help="Only records stored at or after this time (ISO date or date-time).")
@click.option("--format", "fmt", type=click.Choice(["csv", "xlsx", "jsonl"]), default="xlsx",
              show_default=True)  # fmt: skip
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("out/offices"),
              show_default=True, help="Folder for the export file.")  # fmt: skip
def export(code: str, since: str | None, fmt: str, out_dir: Path) -> None:
    """Write what the office receives (its jurisdiction, fields and masking) to a file
    with Chinese headers — for an office without Kafka or the pull API."""
    from datetime import UTC, datetime

    from ehub import office_feed
    from ehub.offices import get_office

    when = None
    if since:
        try:
            when = datetime.fromisoformat(since)
        except ValueError as exc:
            raise click.BadParameter(f"not a date or date-time: {since!r}",
                                     param_hint="--since") from exc  # fmt: skip
        when = when if when.tzinfo else when.replace(tzinfo=UTC)

    def run(store: Store) -> office_feed.ExportResult:
        return office_feed.export(store, get_office(store, code), out_dir,
                                  cast("office_feed.ExportFormat", fmt), since=when,
                                  labels=office_feed.field_labels())  # fmt: skip

    result = _with_store(run)
    console.print(f"office {code}: {result.rows} records "
                  f"({', '.join(f'{k} {n}' for k, n in sorted(result.by_kind.items())) or 'none'})"
                  f" → {result.path}")  # fmt: skip


def _quiet_kafka() -> None:
    """kafka-python logs every refused connection at ERROR; the command says it once."""
    import logging

    if not logging.getLogger().isEnabledFor(logging.INFO):
        logging.getLogger("kafka").setLevel(logging.CRITICAL)


def _lags(
    broker: str, topics: dict[str, str], tls: ClientTls | None = None
) -> tuple[dict[str, str], str]:
    """Each office's consumer lag as text, and a note when it cannot be read."""
    from ehub.errors import BrokerUnavailable
    from ehub.office_consumer import consumer_lag

    if not broker:
        return {}, "consumer lag: no broker known (give --broker or set EHUB_BROKER)"
    _quiet_kafka()
    out: dict[str, str] = {}
    try:
        for code, lag in consumer_lag(broker, topics, tls):
            out[code] = "no topic" if lag is None else f"{lag.total:,}"
    except BrokerUnavailable as exc:
        return out, f"consumer lag: {exc}"
    return out, ""


@office.command()
@click.option("--broker", help="host:port of the Kafka broker (default: EHUB_BROKER / dev stack).")
@click.option("--topic-prefix", help="Topic prefix (default: the hub's, ehub.return.office.).")
@click.option("--no-lag", is_flag=True, help="Do not ask the broker for the consumers' lag.")
def status(broker: str | None, topic_prefix: str | None, no_lag: bool) -> None:
    """Freshness of each office's Kafka feed: published, waiting, the age of the oldest
    waiting message, the p95 lag from a record's commit to its publication, and the
    lag of the office's consumer (`ehub office consume`, group ehub-office-<code>):
    the topic's end offset minus the group's committed offset."""
    from ehub import office_feed
    from ehub.config import Settings
    from ehub.offices import list_offices

    def load(store: Store) -> tuple[list[office_feed.Freshness], list[str]]:
        kafka = [o.code for o in list_offices(store, include_revoked=False)
                 if "kafka" in o.delivery]  # fmt: skip
        return office_feed.freshness(store), kafka

    rows, kafka_offices = _with_store(load)
    settings = Settings.from_env()
    prefix = topic_prefix or settings.return_topic_prefix
    codes = sorted({r.office for r in rows} | set(kafka_offices))
    lags, note = ({}, "") if no_lag or not codes else _lags(
        broker or settings.broker, {c: prefix + c for c in codes}, settings.broker_tls()
    )  # fmt: skip
    by_office = {r.office: r for r in rows}
    table = Table(title="return feeds per office (属地返还)")
    for col in ("office", "published", "waiting", "oldest waiting", "p95 commit→published",
                "consumer lag"):  # fmt: skip
        table.add_column(col, justify="left" if col == "office" else "right")
    for code in codes:
        r = by_office.get(code)
        table.add_row(
            code,
            "" if r is None else f"{r.published:,}",
            "" if r is None else f"{r.pending:,}",
            "" if r is None or r.oldest_pending_s is None else f"{r.oldest_pending_s:,.1f} s",
            "" if r is None or r.p95_lag_s is None else f"{r.p95_lag_s:,.1f} s",
            lags.get(code, "—"),
        )  # fmt: skip
    console.print(table)
    if not codes:
        console.print("no office receives over Kafka yet (`ehub office add … --delivery kafka`)")
    if note:
        console.print(note, highlight=False)


@office.command("feed-cert")
@click.option("--out", "out", type=click.Path(path_type=Path),
              help="Write the PEM here (default: print it).")  # fmt: skip
def feed_cert(out: Path | None) -> None:
    """The hub's feed certificate (PEM, public): hand it to the offices, which check
    every envelope with it (`ehub office consume --hub-cert FILE`)."""
    from cryptography.hazmat.primitives.serialization import Encoding

    from ehub.config import Settings
    from ehub.feeds import FeedSigner

    pem = FeedSigner.dev(Settings.from_env().home).cert.public_bytes(Encoding.PEM)
    if out is None:
        click.echo(pem.decode(), nl=False)
        return
    out.write_bytes(pem)
    console.print(f"hub feed certificate → {out}")


def _hub_certs(path: Path | None) -> tuple[x509.Certificate, ...]:
    from ehub.config import Settings
    from ehub.office_consumer import load_certs

    if path is not None:
        return tuple(load_certs(path))
    home = Settings.from_env().home
    if not (home / "pki" / "root.pem").exists():
        raise click.UsageError(
            "give --hub-cert FILE: the hub's feed certificate, from `ehub office feed-cert` "
            f"on the hub (no hub PKI in {home / 'pki'} to take it from)"
        )
    from ehub.feeds import FeedSigner

    return (FeedSigner.dev(home).cert,)


@office.command()
@click.option("--office", "code", required=True, help="The office's code (its topic is read).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True,
              help="Folder of the output files (one per office).")  # fmt: skip
@click.option("--broker", help="host:port of the Kafka broker (default: EHUB_BROKER / dev stack).")
@click.option("--hub-cert", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="The hub's feed certificate(s), PEM (default: the hub's own, on the hub).")  # fmt: skip
@click.option("--topic-prefix", help="Topic prefix (default: the hub's, ehub.return.office.).")
@click.option("--ca", "ca", type=click.Path(exists=True, dir_okay=False),
              help="CA certificate(s) of the broker's TLS listener, PEM (default: "
                   "EHUB_BROKER_CA_BUNDLE). With --cert or --ca the consumer uses TLS.")  # fmt: skip
@click.option("--cert", "cert", type=click.Path(exists=True, dir_okay=False),
              help="The office's TLS client certificate, PEM (default: "
                   "EHUB_BROKER_CLIENT_CERT).")  # fmt: skip
@click.option("--key", "key", type=click.Path(exists=True, dir_okay=False),
              help="Its unencrypted private key, PEM (default: EHUB_BROKER_CLIENT_KEY).")  # fmt: skip
@click.option("--group", help="Consumer group to commit to (default: ehub-office-<code>).")
@click.option("--max-messages", type=click.IntRange(min=1), help="Stop after N messages.")
@click.option("--idle-exit", type=click.FloatRange(min=0), metavar="SECONDS",
              help="Stop after this long without a message (default: run until Ctrl-C).")  # fmt: skip
def consume(
    code: str,
    out_dir: Path,
    broker: str | None,
    hub_cert: Path | None,
    topic_prefix: str | None,
    ca: str | None,
    cert: str | None,
    key: str | None,
    group: str | None,
    max_messages: int | None,
    idle_exit: float | None,
) -> None:
    """Read the office's return feed into OUT: partition-<n>.jsonl (one verified envelope
    a line, with its partition and offset), rejects.jsonl (bad signature, wrong office,
    not the envelope schema: topic, partition, offset, reason). Lines are fsynced before
    the offsets are committed; a killed run resumes after the last line written."""
    from connectors.tls import ClientTls
    from ehub.config import Settings
    from ehub.office_consumer import ConsumeSpec, consume, group_for

    settings = Settings.from_env()
    tls = ClientTls.from_paths(
        ca or settings.broker_ca_bundle,
        cert or settings.broker_client_cert,
        key or settings.broker_client_key,
        "EHUB_BROKER",
    )
    bootstrap = broker or settings.broker
    if not bootstrap:
        raise click.UsageError("give --broker HOST:PORT (or set EHUB_BROKER)")
    spec = ConsumeSpec(
        office=code,
        topic=(topic_prefix or settings.return_topic_prefix) + code,
        out_dir=out_dir,
        broker=bootstrap,
        tls=tls,
        certs=_hub_certs(hub_cert),
        group=group or group_for(code),
        max_messages=max_messages,
        idle_exit_s=idle_exit,
        fault=settings.fault,
    )
    _quiet_kafka()
    result = consume(spec)
    if result.repaired:
        console.print(f"repaired torn last lines: {', '.join(result.repaired)}")
    console.print(f"office {code}: {result.written:,} written, {result.rejected:,} rejected "
                  f"→ {out_dir}; next offsets {result.next_offsets}", highlight=False)  # fmt: skip
