"""``ehub deliveries``: the delivery outbox — status, dead letters, re-driving them."""

from __future__ import annotations

import getpass

import click
from rich.console import Console
from rich.table import Table

from ehub.config import Settings

console = Console(width=None if Console().is_terminal else 160)


@click.group("deliveries")
def deliveries() -> None:
    """The outbox of deliveries to the platforms."""


@deliveries.command()
def status() -> None:
    """Rows per destination, kind and state, with the oldest row's age; the circuit
    breaker of each destination."""
    from ehub import deliveries as d
    from ehub.pipeline.circuit import Circuit
    from ehub.pipeline.delivery_items import CHANNELS
    from ehub.store.db import Store

    store = Store(Settings.from_env().database_url)
    try:
        rows = d.status(store)
        circuits = [Circuit(store, dest).state() for dest in CHANNELS]
    finally:
        store.dispose()
    table = Table(title="deliveries")
    for col in ("destination", "kind", "state", "count", "oldest"):
        table.add_column(col, justify="right" if col == "count" else "left")
    for r in rows:
        table.add_row(r.destination, r.kind, r.state, f"{r.count:,}",
                      r.oldest.strftime("%Y-%m-%d %H:%M:%S") if r.oldest else "")  # fmt: skip
    console.print(table)
    for c in circuits:
        colour = {"closed": "green", "open": "red"}.get(c.state, "yellow")
        since = f" since {c.opened_at:%Y-%m-%d %H:%M:%S}" if c.opened_at else ""
        why = f" — {c.last_error}" if c.state != "closed" and c.last_error else ""
        console.print(f"circuit {c.destination}: [{colour}]{c.state}[/]{since}{why}")


@deliveries.command()
@click.option("--destination", "destinations", multiple=True,
              type=click.Choice(["provincial", "national"]),
              help="Only these destinations (repeatable; default: both).")  # fmt: skip
@click.option("--poll", default=0.2, show_default=True, help="Seconds between outbox polls.")
def worker(destinations: tuple[str, ...], poll: float) -> None:
    """Deliver continuously: send outbox rows within a poll interval of their commit
    (the delivery DAGs remain the sweep). Stops on SIGTERM / Ctrl-C."""
    import signal
    import threading

    from ehub.pipeline.delivery_worker import serve
    from ehub.store.db import Store

    settings = Settings.from_env()
    store = Store(settings.database_url)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    console.print(f"delivery worker: {', '.join(destinations or ('provincial', 'national'))}; "
                  "Ctrl-C to stop")  # fmt: skip
    try:
        stats = serve(settings, store, destinations=destinations or ("provincial", "national"),
                      poll=poll, stop=stop)  # fmt: skip
    except KeyboardInterrupt:
        stop.set()
        return
    finally:
        store.dispose()
    console.print(f"delivered {stats.delivered}, rejected {stats.rejected}")


@deliveries.command()
@click.argument("destination", type=click.Choice(["provincial", "national"]))
def reset_circuit(destination: str) -> None:
    """Close a destination's circuit breaker by hand (after the platform is back)."""
    from ehub.pipeline.circuit import Circuit
    from ehub.store.db import Store

    store = Store(Settings.from_env().database_url)
    try:
        Circuit(store, destination).reset()
    finally:
        store.dispose()
    console.print(f"circuit {destination}: closed")


@deliveries.command("dead-letters")
@click.option("--destination")
@click.option("--rejected", is_flag=True, help="Show rows the platform rejected instead.")
@click.option("--limit", default=100, show_default=True)
def dead_letters(destination: str | None, rejected: bool, limit: int) -> None:
    """Deliveries that failed every attempt (or were rejected), with the last error."""
    from ehub import deliveries as d
    from ehub.store.db import Store

    store = Store(Settings.from_env().database_url)
    try:
        rows = d.letters(store, state="rejected" if rejected else "dead",
                         destination=destination, limit=limit)  # fmt: skip
    finally:
        store.dispose()
    table = Table(title="rejected deliveries" if rejected else "dead letters")
    for col in ("id", "destination", "kind", "record", "v", "attempts", "last error"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(str(r.id), r.destination, r.kind, r.identifier, str(r.version),
                      str(r.attempts), r.last_error or "")  # fmt: skip
    console.print(table)
    console.print(f"{len(rows)} shown; re-drive with `ehub deliveries retry`")


@deliveries.command()
@click.option("--destination")
@click.option("--rejected", is_flag=True, help="Re-drive rejected rows (after a fix) instead.")
@click.option("--id", "ids", type=int, multiple=True, help="Only these rows (repeatable).")
def retry(destination: str | None, rejected: bool, ids: tuple[int, ...]) -> None:
    """Put dead letters (or rejected rows) back in the outbox, same idempotency keys."""
    from ehub import deliveries as d
    from ehub.store.db import Store

    store = Store(Settings.from_env().database_url)
    try:
        n = d.redrive(store, state="rejected" if rejected else "dead", destination=destination,
                      ids=ids, actor=getpass.getuser())  # fmt: skip
    finally:
        store.dispose()
    console.print(f"{n} deliveries back in the outbox; the next delivery run sends them")


@click.command("reconcile")
@click.option("--date", "day", required=True, help="The day (YYYY-MM-DD, China Standard Time).")
@click.option("--destination", default="provincial", show_default=True,
              type=click.Choice(["provincial", "national"]))  # fmt: skip
@click.option("--kind", default="license", show_default=True,
              type=click.Choice(["license", "case", "seal"]),
              help="What to reconcile (seal registrations: national only).")  # fmt: skip
@click.option("--no-redeliver", is_flag=True, help="Report only; re-queue nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the machine report.")
def reconcile(day: str, destination: str, kind: str, no_redeliver: bool, as_json: bool) -> None:
    """Compare a day's delivered set with the platform's report; re-queue what it lacks."""
    import json
    from datetime import date

    from ehub.pipeline.deliver import client_for
    from ehub.pipeline.delivery_items import CHANNELS
    from ehub.pipeline.reconcile import reconcile as run
    from ehub.store.db import Store

    try:
        when = date.fromisoformat(day)
    except ValueError as exc:
        raise click.BadParameter(f"not a date: {day!r}", param_hint="--date") from exc
    if kind not in {c.kind for c in CHANNELS[destination]}:
        raise click.BadParameter(f"the {destination} platform receives no {kind} records",
                                 param_hint="--kind")  # fmt: skip
    settings = Settings.from_env()
    store = Store(settings.database_url)
    client = client_for(settings, destination)
    try:
        r = run(store, client, when, destination=destination, kind=kind,
                redeliver=not no_redeliver)  # fmt: skip
    finally:
        client.close()
        store.dispose()
    if as_json:
        click.echo(json.dumps(r.as_dict(), ensure_ascii=False, indent=2))
        return
    state = "[green]match[/]" if r.matched else "[red]differ[/]"
    console.print(f"{r.destination} {r.kind} {r.day}: hub {r.hub_count}, platform {r.platform_count}; "
                  f"digests {state}")  # fmt: skip
    if r.straddling:
        console.print(f"  {r.straddling} received by the platform on the other side of midnight")
    for ident, ver in r.missing:
        console.print(f"  [red]missing at the platform[/] {ident} v{ver}"
                      + (" — re-queued" if r.redelivered else ""))  # fmt: skip
    for ident, ver, receipt in r.unknown_to_hub:
        console.print(f"  [yellow]unknown to the hub[/] {ident} v{ver} (receipt {receipt})")


@click.command("crosscheck")
@click.option("--json", "as_json", is_flag=True, help="Print the machine report.")
def crosscheck(as_json: bool) -> None:
    """Licenses against case records, both ways: granted cases without a license,
    licenses whose related case is unknown or unfinished. Exit 1 when any is found."""
    import json

    from ehub.crosscheck import cross_check
    from ehub.store.db import Store

    store = Store(Settings.from_env().database_url)
    try:
        r = cross_check(store)
    finally:
        store.dispose()
    if as_json:
        click.echo(json.dumps(r.as_dict(), ensure_ascii=False, indent=2))
    else:
        console.print(f"{r.cases_granted} granted cases, {r.licenses_with_case} related cases "
                      f"named by licenses: {'consistent' if r.consistent else r.counts()}")  # fmt: skip
        for n in r.granted_without_license:
            console.print(f"  granted case without license: {n}")
        for ident, n in r.license_case_unknown:
            console.print(f"  license {ident}: related case {n} unknown")
        for ident, n, st in r.license_case_unfinished:
            console.print(f"  license {ident}: related case {n} is {st}")
    if not r.consistent:
        raise SystemExit(1)
