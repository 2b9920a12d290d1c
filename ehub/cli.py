"""The ``ehub`` command line."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import click
from rich.console import Console

from ehub.cli_api_client import api_client
from ehub.cli_audit import audit, trace
from ehub.cli_deliveries import crosscheck, deliveries, reconcile
from ehub.cli_feeds import feeds
from ehub.cli_hsm import hsm
from ehub.cli_license import license_
from ehub.cli_office import office
from ehub.cli_pki import pki
from ehub.cli_quarantine import quarantine
from ehub.cli_seal import seal
from ehub.cli_source import source
from ehub.cli_verify import verify
from ehub.config import Settings, default_home
from ehub.errors import HubError
from ehub.logging_setup import configure

console = Console(width=None if Console().is_terminal else 140)


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log at INFO level.")
def main(verbose: bool) -> None:
    """ehub — the province's data-exchange and e-license hub."""
    # Text lines, or JSON lines with EHUB_LOG_FORMAT=json; ID numbers and phones masked.
    configure(logging.INFO if verbose else logging.WARNING, os.environ.get("EHUB_LOG_FORMAT", ""))
    # httpx logs every URL with its query (lookup keys, cursors): keep it to warnings.
    logging.getLogger("httpx").setLevel(logging.WARNING)


main.add_command(api_client)
main.add_command(audit)
main.add_command(trace)
main.add_command(deliveries)
main.add_command(feeds)
main.add_command(reconcile)
main.add_command(crosscheck)
main.add_command(hsm)
main.add_command(pki)
main.add_command(license_)
main.add_command(office)
main.add_command(quarantine)
main.add_command(seal)
main.add_command(source)
main.add_command(verify)


@main.group()
def dev() -> None:
    """The embedded development stack (broker, simulators)."""


@dev.command("up")
@click.option("--count", default=200, show_default=True, help="Records to seed per department.")
@click.option("--reseed", is_flag=True, help="Regenerate the department database.")
def dev_up(count: int, reseed: bool) -> None:
    """Start the broker and simulators on free loopback ports."""
    from ehub import devstack

    state = devstack.up(default_home(), seed_count=count, reseed=reseed)
    console.print_json(json.dumps(state, ensure_ascii=False))


@dev.command("down")
def dev_down() -> None:
    """Stop everything `ehub dev up` started."""
    from ehub import devstack

    stopped = devstack.down(default_home())
    console.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@dev.command("status")
def dev_status() -> None:
    from ehub import devstack

    console.print_json(json.dumps(devstack.status(default_home()), ensure_ascii=False))


@main.command()
@click.option("--count", default=200, show_default=True, help="Records to seed per department.")
@click.option(
    "--out", "out_dir", default="out/demo", show_default=True, type=click.Path(path_type=Path)
)
def demo(count: int, out_dir: Path) -> None:
    """Run the whole journey once through Airflow and write out/demo/summary.json."""
    from ehub.demo import run_demo

    run_demo(default_home() / "demo", out_dir.resolve(), count=count, console=console)


@main.group()
def db() -> None:
    """The hub store."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply the Alembic migrations to EHUB_DATABASE_URL."""
    from ehub.store.db import Store, safe_url

    settings = Settings.from_env()
    store = Store(settings.database_url)
    store.migrate()
    console.print(f"hub store at {safe_url(settings.database_url)} is up to date")


@main.command()
@click.argument("dag_ids", nargs=-1)
def run(dag_ids: tuple[str, ...]) -> None:
    """Run DAGs through Airflow (dag.test); default: the whole journey."""
    from ehub.orchestration import journey, run_dags

    for res in run_dags(Settings.from_env(), dag_ids or journey()):
        console.print(f"{res.dag_id}: {res.state}")


@main.command()
@click.argument(
    "stage",
    type=click.Choice(
        ["extract", "normalize", "seal", "deliver", "deliver_national", "publish", "return_intake"]
    ),
)
@click.option(
    "--source", "source_id", help="Source id for extract/normalize (default: every spec)."
)
def stage(stage: str, source_id: str | None) -> None:
    """Run one pipeline stage outside Airflow (for debugging)."""
    from ehub.sources.loader import load_all
    from ehub.tasks import SOURCE_STAGES, run_stage

    if stage in SOURCE_STAGES:
        ids = [source_id] if source_id else [s.id for s in load_all()]
        failed = []
        for sid in ids:
            try:
                console.print_json(json.dumps(run_stage(stage, None, sid), ensure_ascii=False))
            except HubError as exc:  # one source failing must not stop the others
                failed.append(sid)
                console.print(f"[red]error:[/] {stage} {sid}: {exc}")
        if failed:
            raise HubError(f"{stage} failed for {', '.join(failed)} (the other sources ran)")
    else:
        console.print_json(json.dumps(run_stage(stage), ensure_ascii=False))


@main.command()
def summary() -> None:
    """Counts of the journey in the hub store."""
    from ehub.store.db import Store
    from ehub.summary import journey_counts

    store = Store(Settings.from_env().database_url)
    console.print_json(json.dumps(journey_counts(store), ensure_ascii=False))


def run_cli() -> None:
    try:
        main(standalone_mode=False)
    except HubError as exc:
        console.print(f"[red]error:[/] {exc}")
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        sys.exit(130)


@main.command()
@click.option("--port", default=0, help="Airflow API server port (default: a free one).")
def up(port: int) -> None:
    """The stack kept running: dev services plus `airflow standalone` on loopback (Ctrl-C stops all)."""
    import signal

    from ehub import devstack
    from ehub.orchestration import airflow_env, ensure_airflow_db

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    home = default_home()
    devstack.up(home)
    try:
        settings = Settings.from_env()
        ensure_airflow_db(settings)
        env = airflow_env(settings)
        port = port or devstack.free_port()
        env.update({"AIRFLOW__API__HOST": "127.0.0.1", "AIRFLOW__API__PORT": str(port)})
        if not env.get("EHUB_API_TOKENS"):
            from ehub.hub_auth import dev_operator_token

            env["EHUB_API_TOKENS"] = dev_operator_token(settings.home)[1]
        console.print(
            f"Airflow UI on http://127.0.0.1:{port} (credentials: see "
            f"{settings.home / 'airflow'}/simple_auth_manager_passwords.json.generated)\n"
            f"dashboard 数字驾驶舱 and hub API on http://127.0.0.1:{port}/ehub/dashboard "
            f"(operator token: {settings.home / 'operator_token'})"
        )
        proc = subprocess.Popen(["airflow", "standalone"], env=env, start_new_session=True)
        signal.signal(signal.SIGTERM, interrupt)
        try:
            proc.wait()
        except KeyboardInterrupt:
            console.print("stopping Airflow and the dev stack…")
        finally:
            _stop_group(proc)
    finally:
        devstack.down(home)


@main.command()
@click.option("--count", default=2000, show_default=True, help="Records per benchmark.")
@click.option(
    "--out",
    "out_path",
    default="out/bench/bench.json",
    show_default=True,
    type=click.Path(path_type=Path),
)
@click.option(
    "--memory-rows",
    default="10000,1000000",
    show_default=True,
    help="Source sizes of the peak-memory runs (comma-separated; empty to skip).",
)
@click.option(
    "--seal-memory",
    default=2000,
    show_default=True,
    help="Seals of the RSS series in a fresh process (100000 for the full 100 k run; 0 skips).",
)
@click.option(
    "--seal-api-posts",
    default=200,
    show_default=True,
    help="Licenses posted to the on-demand sealing API for seal_api_p95_ms.",
)
@click.option(
    "--delivery-cases",
    default=20_000,
    show_default=True,
    help="Case record versions delivered to both platforms for deliver_case_per_s.",
)
def bench(
    count: int,
    out_path: Path,
    memory_rows: str,
    seal_memory: int,
    seal_api_posts: int,
    delivery_cases: int,
) -> None:
    """Benchmarks of the stages that exist -> out/bench/bench.json."""
    from ehub.bench import run_bench

    sizes = tuple(int(x) for x in memory_rows.split(",") if x.strip())
    result = run_bench(
        count=count,
        out_path=out_path.resolve(),
        console=console,
        memory_rows=sizes,
        seal_memory=seal_memory,
        seal_api_posts=seal_api_posts,
        delivery_cases=delivery_cases,
    )
    console.print_json(json.dumps(result["figures"]))


@main.command("verify-server")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8765, show_default=True, type=int)
def verify_server(host: str, port: int) -> None:
    """Serve the verification endpoint behind the licenses' QR codes (GET /verify/<identifier>)."""
    import uvicorn

    from ehub.verify_api import create_app

    settings = Settings.from_env()
    console.print(f"verification endpoint on http://{host}:{port}/verify/<identifier>; "
                  f"QR codes lead to {settings.verify_url}/<identifier>")  # fmt: skip
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")


def _stop_group(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Stop a process started in its own session, with everything it started."""
    import os
    import signal

    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            continue
