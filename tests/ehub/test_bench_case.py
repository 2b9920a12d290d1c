"""The bench's case pipeline figure: stages timed one after another, with the CPU time
of the hub process per stage beside the wall-clock seconds."""

from __future__ import annotations

import time
from typing import Any

import pytest

from ehub import bench


def test_case_pipeline_reports_wall_and_cpu_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    def stage(name: str, settings: Any, source: str | None) -> dict[str, Any]:
        end = time.process_time() + (0.02 if name == "normalize" else 0.0)
        while time.process_time() < end:  # CPU work
            pass
        if name == "deliver":
            time.sleep(0.05)  # waiting for the platform: wall time, no CPU
        return {"stage": name, "delivered": 1900, "published": 1900}

    monkeypatch.setattr(bench, "run_stage", stage)
    out = bench._case_pipeline(settings=None)  # type: ignore[arg-type]
    wall, cpu = out["stage_seconds"], out["stage_cpu_seconds"]
    assert list(wall) == list(cpu) == ["extract", "normalize", "deliver", "publish"]
    assert cpu["normalize"] >= 0.015 and wall["deliver"] >= 0.04 > cpu["deliver"]
    assert out["e2e_case_per_s"] == pytest.approx(1900 / sum(wall.values()), rel=0.02)


def test_normalize_figure_is_measured_under_the_stage_gc_regime() -> None:
    """normalize_per_s is the rate of the normalize stage, which runs with a higher
    young-generation threshold than CPython's default; the figure measures under the
    same one and restores the caller's afterwards."""
    import gc

    from ehub import tasks

    seen: list[tuple[int, int, int]] = []

    def normalize_all() -> int:
        seen.append(gc.get_threshold())
        end = time.thread_time() + 0.002
        while time.thread_time() < end:
            pass
        return 10

    before = gc.get_threshold()
    per_s, detail = bench.normalize_figure(normalize_all, rows=10)
    assert gc.get_threshold() == before
    assert len(seen) == len(detail["cpu_s"]) == 5
    assert {t[0] for t in seen} == {tasks.STAGE_GC_THRESHOLD}
    assert per_s == pytest.approx(10 / min(detail["cpu_s"]), rel=0.3)
    assert per_s <= 10 / 0.002 * 1.01  # each pass took at least 2 ms of this thread's CPU
