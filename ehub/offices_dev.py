"""The dev stack's offices: one per Shandong prefecture (its 行政审批服务局).

Each receives every record of its city and the city's counties and townships
(``include_children``), every field, masked by the hub's default policy, over
Kafka, the pull API and file exports. Every routable record therefore reaches
exactly one dev office, which is what the demo and the journey tests count.
County and township offices, narrower field scopes and masking policies are
registered with ``ehub office add`` (and exercised by the routing tests).
"""

from __future__ import annotations

from ehub import divisions
from ehub.offices import OfficeNotFound, add_office, get_office
from ehub.store.db import Store


def dev_office_code(prefecture: str) -> str:
    return f"{prefecture}-city"


def ensure_dev_offices(store: Store) -> dict[str, str]:
    """Register the dev offices that do not exist yet; their credentials (shown once)."""
    created: dict[str, str] = {}
    for city in divisions.prefectures("37"):
        code = dev_office_code(city.code)
        try:
            get_office(store, code)
            continue
        except OfficeNotFound:
            pass
        _office, token = add_office(
            store, code, f"{city.name}行政审批服务局", city.code,
            kinds=("license", "case"), fields={"license": ["*"], "case": ["*"]},
            include_children=True, delivery=("kafka", "pull", "file"),
        )  # fmt: skip
        created[code] = token
    return created
