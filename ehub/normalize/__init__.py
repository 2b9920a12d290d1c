"""Normalization: raw source payload in, canonical record or rejection out.

Pure functions: no clock, no network, no globals beyond read-only code lists.
A record with several defects is rejected with every defect found, so the
department can fix them all at once.
"""

from __future__ import annotations

from ehub.errors import RecordError


class RecordRejected(Exception):
    """A record failed validation; ``errors`` lists each defect (at least one)."""

    def __init__(self, errors: list[RecordError]) -> None:
        assert errors, "a rejection needs at least one error"
        self.errors = errors
        super().__init__("; ".join(str(e) for e in errors))
