"""The foundation journey end to end, through Airflow, on the embedded stack.

Department database (SQL) → normalize/quarantine → PAdES seal → provincial
platform simulator (HTTP, idempotency keys) → county return topics on the
broker. Then: a second run adds nothing; killed runs resume to the same final
state as an uninterrupted one.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ehub import devstack
from ehub.config import Settings
from ehub.orchestration import JOURNEY, AirflowRunError, run_dags
from tests.conftest import need_binary
from tests.integration import journey_support as js

pytestmark = pytest.mark.slow


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Settings]:
    home = tmp_path / "home"
    try:
        yield js.start(home)
    finally:
        devstack.down(home)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """An uninterrupted run of every stage (no Airflow), for comparison."""
    home = tmp_path_factory.mktemp("baseline") / "home"
    try:
        settings = js.start(home)
        js.run_all_stages(settings)
        yield js.final_state(settings)
    finally:
        devstack.down(home)


def _check_complete(state: dict[str, Any], seeded: dict[str, Any] | None = None) -> None:
    assert state["pending"] == 0
    assert state["extracted"] == state["normalized"] + state["quarantined"]
    assert state["quarantined"] >= 1 and state["sealed"] >= 1
    assert state["delivered"]["provincial"] == {"license": state["sealed"]}
    national = state["delivered"]["national"]
    assert national["license"] == state["sealed"] and national["seal"] >= 1  # catalog, 备案
    assert state["platform_versions"] == state["platform_distinct_versions"] == state["sealed"]
    assert state["returned"] == state["sealed"]
    assert state["messages_on_broker"] == state["distinct_messages_on_broker"] == state["returned"]


def test_journey_through_airflow_then_rerun_adds_nothing(
    stack: Settings, baseline: dict[str, Any]
) -> None:
    results = run_dags(stack, JOURNEY)
    assert [r.state for r in results] == ["success"] * len(JOURNEY)
    first = js.final_state(stack)
    _check_complete(first)
    assert first == baseline  # Airflow and the plain stage runner agree
    seeded = devstack.status(stack.home)["seeded"][js.SOURCE]  # type: ignore[index]
    assert first["extracted"] == seeded["count"] == js.SEED_COUNT
    assert first["quarantined_by_reason"] == seeded["expected"]

    need_binary("pdfsig", "poppler-utils")
    need_binary("certutil", "libnss3-tools")
    assert js.validate_documents(stack, stack.home / "nss") == first["sealed"]

    run_dags(stack, JOURNEY)
    assert js.final_state(stack) == first


def test_journey_killed_inside_airflow_resumes_to_the_same_state(
    stack: Settings, baseline: dict[str, Any]
) -> None:
    from dataclasses import replace

    with pytest.raises(AirflowRunError, match="seal__licenses"):
        run_dags(replace(stack, fault="seal:2"), JOURNEY)
    partial = js.hub_counts(stack)
    assert 0 < partial["sealed"] < baseline["sealed"]
    run_dags(stack, JOURNEY)
    state = js.final_state(stack)
    _check_complete(state)
    assert state == baseline


CRASH_POINTS = [
    ("extract", "extract:1:before"),
    ("extract", "extract:2"),
    ("normalize", "normalize:1:before"),
    ("normalize", "normalize:2"),
    ("seal", "seal:1:before"),
    ("seal", "seal:2"),
    ("deliver", "deliver:1:before"),  # sent, receipts not yet stored
    ("deliver", "deliver:2"),
    ("publish", "publish:1:before"),  # marked sending, nothing published
    ("publish", "publish:1:acked"),  # published and acknowledged, not yet recorded
    ("publish", "publish:2"),
]


@pytest.mark.parametrize(("stage", "fault"), CRASH_POINTS, ids=[f for _, f in CRASH_POINTS])
def test_kill_at_each_crash_point_then_resume(
    stack: Settings, baseline: dict[str, Any], stage: str, fault: str
) -> None:
    for s in js.STAGES:
        code = js.run_stage_process(stack, s, fault if s == stage else "")
        if s == stage:
            assert code == 137, f"the fault {fault} did not fire"
            break
    js.run_all_stages(stack)
    state = js.final_state(stack)
    _check_complete(state)
    assert state == baseline


def test_sigkill_at_random_moments_then_resume(stack: Settings, baseline: dict[str, Any]) -> None:
    """Kill -9 the whole journey three times at random moments, then let it finish."""
    rng = random.Random(int(os.environ.get("EHUB_TEST_SEED", "20261121")))
    script = (
        "from ehub.tasks import run_stage\n"
        f"for s in {js.STAGES!r}: run_stage(s, None, {js.SOURCE!r} if s in ('extract', 'normalize') else None)\n"
    )
    kills = 0
    for _ in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-c", script],
            env=js.stage_env(stack),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(1.0, 5.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    js.run_all_stages(stack)
    state = js.final_state(stack)
    _check_complete(state)
    assert state == baseline
    assert kills >= 1
