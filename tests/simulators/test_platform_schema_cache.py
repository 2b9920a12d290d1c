"""A referenced schema file is read once, not once per validated item (it was read
for every item: about a third of the simulator's time per case record)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ehub.bench_delivery import sample_case
from simulators.platform_checks import SchemaFile, validate_item

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def test_referenced_schemas_are_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[str] = []
    real = Path.rglob

    def counting(self: Path, pattern: str):  # type: ignore[no-untyped-def]
        reads.append(pattern)
        return real(self, pattern)

    monkeypatch.setattr(Path, "rglob", counting)
    schema = SchemaFile(SCHEMAS / "case_item.schema.json")
    for n in range(20):
        validate_item(schema, {"idempotency_key": f"k{n}", "case": sample_case(n)})
    assert reads and len(reads) == len(set(reads)), reads  # each referenced file once
