"""Pipeline stages: extract → normalize → seal → deliver → publish.

Each stage is an Airflow-free function ``run(settings, store) -> StageResult``
that works in bounded batches, commits each batch in one transaction together
with its outbox rows and audit events, and can be re-run at any point after a
crash with the same final result (idempotent by natural keys and outboxes).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class StageResult:
    """Counts of one stage run (what XCom carries: counts, never records)."""

    stage: str
    batches: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {"stage": self.stage, "batches": self.batches, **self.counts}
