"""The corpus tests' totals, printed at the end of the session (``make test`` output)."""

from __future__ import annotations

from typing import Any


def pytest_terminal_summary(terminalreporter: Any) -> None:
    from tests.security.corpus import field_cases
    from tests.security.corpus_files import file_cases
    from tests.security.corpus_support import TALLY

    if TALLY["tried"]:
        generated = len(field_cases()) + len(file_cases())
        terminalreporter.write_line(
            f"hostile-input corpus ({generated} generated cases, each through every intake "
            f"path that can carry it, on SQLite and PostgreSQL): "
            f"cases tried {TALLY['tried']}, quarantined/rejected "
            f"{TALLY['refused']}, kept as inert text or read whole {TALLY['kept']}, "
            f"lost {TALLY['lost']}, leaks {TALLY['leaks']}"
        )
