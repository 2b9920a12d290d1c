"""The sealing memory series of ``ehub bench``: a short run and its figures."""

from __future__ import annotations

from pathlib import Path

import pytest

from ehub.bench_seal_memory import _figures, sample_points, seal_memory_series


def test_a_short_series_has_consistent_figures(tmp_path: Path) -> None:
    r = seal_memory_series(tmp_path, seals=30, samples=5)
    assert r["seals"] == 30 and r["level"] == "B-B"
    assert r["seconds"] > 0 and r["per_s"] > 0
    assert r["per_s"] == pytest.approx(30 / r["seconds"], rel=0.05)
    points = [i for i, _ in r["rss_mb"]]
    assert points == [6, 12, 18, 24, 30]  # evenly spaced, the last after the last seal
    assert all(mb > 0 for _, mb in r["rss_mb"])
    assert r["rss_start_mb"] > 0
    assert r["warm_at"] == 6  # first sample at or after 10 % of the run
    assert r["rss_first_mb"] == r["rss_mb"][0][1] and r["rss_last_mb"] == r["rss_mb"][-1][1]
    assert r["rss_max_mb"] == max(mb for _, mb in r["rss_mb"])
    assert r["growth_mb"] == pytest.approx(r["rss_last_mb"] - r["rss_first_mb"], abs=0.051)
    assert r["growth_mb_per_10k_seals"] == pytest.approx(r["growth_mb"] * 10_000 / 24, abs=0.5)
    assert r["bound_mb"] == max(20.0, round(0.1 * r["rss_first_mb"], 1))
    assert r["flat"] is (r["growth_mb"] <= r["bound_mb"])
    assert r["growth_mb_second_half"] == pytest.approx(
        r["rss_last_mb"] - r["rss_mb"][2][1], abs=0.051
    )  # from the sample at 15 (50 %) on: 18
    assert r["rss_after_trim_mb"] is None or 0 < r["rss_after_trim_mb"] <= r["rss_last_mb"] + 1
    assert (tmp_path / "seal_memory" / "pki").is_dir()


def test_sample_points_are_evenly_spaced_and_end_at_the_run() -> None:
    assert sample_points(2000, 20) == list(range(100, 2001, 100))
    assert sample_points(7, 3) == [3, 5, 7]
    assert sample_points(3, 3) == [1, 2, 3]


def test_growth_is_measured_from_the_first_sample_after_warm_up() -> None:
    raw = {
        "seals": 100,
        "seconds": 5.0,
        "rss_start_mb": 80.0,
        "rss_mb": [[5, 90.0], [10, 100.0], [50, 101.0], [100, 130.5]],
    }
    r = _figures(raw)
    assert r["warm_at"] == 10 and r["rss_first_mb"] == 100.0
    assert r["growth_mb"] == 30.5 and r["bound_mb"] == 20.0 and r["flat"] is False
    assert r["growth_mb_per_10k_seals"] == pytest.approx(30.5 * 10_000 / 90, abs=0.1)
    assert r["per_s"] == 20.0 and r["rss_max_mb"] == 130.5
    assert r["growth_mb_second_half"] == 29.5  # from the sample at 50
    assert r["rss_after_trim_mb"] is None
