"""``ehub feeds``: the return feeds to the offices — the continuous publisher."""

from __future__ import annotations

import click
from rich.console import Console

from ehub.config import Settings

console = Console(width=None if Console().is_terminal else 160)


@click.group("feeds")
def feeds() -> None:
    """Return feeds to the grassroots offices (属地返还)."""


@feeds.command()
@click.option(
    "--poll",
    default=0.2,
    show_default=True,
    help="Seconds between outbox polls on SQLite (PostgreSQL is woken by NOTIFY).",
)
@click.option(
    "--idle",
    default=2.0,
    show_default=True,
    help="Longest sleep on PostgreSQL when no commit wakes the worker.",
)
@click.option("--batch", default=2000, show_default=True, help="Messages per publish batch.")
def worker(poll: float, idle: float, batch: int) -> None:
    """Publish continuously: feed messages reach the offices' topics within a moment of
    their record's commit (the return-feed DAG remains the sweep; both share one
    publish lease, so nothing is published twice). Stops on SIGTERM / Ctrl-C."""  # fmt: skip
    import signal
    import threading

    from ehub.feed_worker import serve
    from ehub.store.db import Store

    if batch < 1:
        raise click.BadParameter("must be at least 1", param_hint="--batch")
    settings = Settings.from_env()
    store = Store(settings.database_url)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    console.print(f"feed worker: broker {settings.require('broker')}; Ctrl-C to stop")
    try:
        stats = serve(settings, store, poll=poll, idle=idle, batch=batch, stop=stop)
    except KeyboardInterrupt:
        stop.set()
        return
    finally:
        store.dispose()
    console.print(f"published {stats.published}, recovered {stats.recovered}, "
                  f"withheld {stats.withheld}")  # fmt: skip
