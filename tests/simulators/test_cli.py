"""``python -m simulators``: the provincial server under real uvicorn, and the seeder."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.simulators.payloads import AUTH, TOKEN, item, license_json

ROOT = Path(__file__).resolve().parents[2]


def _lines(stream: Any, into: queue.Queue[str]) -> None:
    for line in stream:
        into.put(line)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "simulators",
            "provincial",
            "--port",
            "0",
            "--state",
            str(tmp_path / "state"),
            "--token",
            TOKEN,
            "--signature-check",
            "structural",
            "--log-level",
            "critical",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_lines, args=(proc.stdout, lines), daemon=True).start()
    try:
        deadline = time.monotonic() + 30
        while True:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if line.startswith("{"):
                ready = json.loads(line)
                break
        assert ready["ready"] is True
        yield ready["url"], proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_provincial_server_reset_timeout_and_sigterm(
    server: tuple[str, subprocess.Popen[str]],
) -> None:
    url, proc = server
    with httpx.Client(base_url=url, timeout=5) as client:
        assert client.get("/healthz").json() == {"status": "ok"}

        client.post("/admin/faults", json={"kind": "reset", "count": 1})
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            client.post("/api/v1/licenses/batch", json={"items": [item("k1")]}, headers=AUTH)
        assert client.get("/admin/stats").json()["versions"] == 0

        client.post("/admin/faults", json={"kind": "timeout", "delay": 1.5, "count": 1})
        with pytest.raises(httpx.ReadTimeout):
            client.post(
                "/api/v1/licenses/batch", json={"items": [item("k1")]}, headers=AUTH, timeout=0.3
            )
        deadline = time.monotonic() + 10
        while client.get("/admin/stats").json()["versions"] == 0:
            assert time.monotonic() < deadline, "the timed-out batch was never stored"
            time.sleep(0.1)
        retry = client.post("/api/v1/licenses/batch", json={"items": [item("k1")]}, headers=AUTH)
        (receipt,) = retry.json()["receipts"]
        assert receipt["status"] == "accepted" and receipt["duplicate"] is True

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0


def test_market_regulation_command(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'scjg.db'}"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "simulators",
            "market-regulation",
            "--url",
            url,
            "--count",
            "40",
            "--defect-rate",
            "0.25",
            "--seed",
            "4",
            "--with-ids",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    report = json.loads(out.stdout)
    assert report["count"] == 40 and report["defective"] == 10
    assert sum(report["defects"].values()) == 10
    assert len(report["defective_ids"]) == 10
    assert license_json()["ZZMC"] == "营业执照"  # payload helpers importable from here too
