"""The crash-injection points the kill-and-rerun tests rely on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from ehub.pipeline.faults import EXIT_CODE, crash_point

SCRIPT = """
import sys
from ehub.pipeline.faults import crash_point
for n in range(1, 6):
    crash_point(sys.argv[1], "publish", n, "acked")
    crash_point(sys.argv[1], "publish", n)
    print(n, flush=True)
"""


def _run(spec: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", SCRIPT, spec], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)  # fmt: skip


def test_other_stages_and_batches_are_left_alone() -> None:
    crash_point("", "publish", 1)
    crash_point("seal:1", "publish", 1)
    crash_point("publish:2", "publish", 1)
    crash_point("publish:1:before", "publish", 1, "after")


@pytest.mark.parametrize(("spec", "printed"), [("publish:3", "1\n2\n"),
                                               ("publish:3:acked", "1\n2\n"),
                                               ("seal:1,publish:2", "1\n")])  # fmt: skip
def test_a_kill_ends_the_process_at_its_batch(spec: str, printed: str) -> None:
    proc = _run(spec)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_CODE
    assert out == printed


def test_hold_stops_the_process_after_its_batch_until_continued_then_a_later_kill() -> None:
    proc = _run("publish:2:hold,publish:4")
    assert proc.stdout is not None
    assert proc.stdout.readline() == "1\n"
    deadline = time.monotonic() + 60
    while _state(proc.pid) != "T":
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGCONT)
    out, _ = proc.communicate(timeout=60)
    assert out == "2\n3\n"
    assert proc.returncode == EXIT_CODE


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]
