"""Peak memory of a generator run, measured in a fresh interpreter (no tracing overhead)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def peak_rss_mib(snippet: str) -> float:
    """Run ``snippet`` in a new Python process; its peak resident set size in MiB."""
    code = (
        snippet
        + "\nimport resource\nprint(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return float(out.stdout.strip().splitlines()[-1])
