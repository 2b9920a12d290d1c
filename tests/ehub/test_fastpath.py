"""The generated fast path of SpecNormalizer gives exactly what the closures give.

Runs every shipped source spec over its simulator's records (a third of them
defective, every defect kind present) with both paths, and compares the
records produced and the (reason, field, value) of every rejection.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ehub.normalize import RecordRejected
from ehub.normalize.canonical import SpecNormalizer
from ehub.sources.loader import find_spec
from simulators import case_records, file_drop, housing_data, market_regulation, transport_events

N = 600
RATE = 0.35


def _records(source_id: str) -> Iterator[dict[str, Any]]:
    if source_id.startswith("market"):
        yield from market_regulation.iter_rows(N, defect_rate=RATE, seed=5)
    elif source_id.startswith("acceptance"):
        lookups = {r["SSBM"]: r for r in case_records.item_rows()}
        for row in case_records.iter_rows(N, defect_rate=RATE, seed=5):
            item = lookups.get(row.get("SSBM") or "")
            if item:  # what the extract stage adds from T_SXML
                row["_lookups"] = {
                    "SXMC": item["SXMC"],
                    "SSJG": item["SSJGMC"],
                    "SSJGDM": item["SSJGDM"],
                }
            yield row
    elif source_id.startswith("health"):
        yield from file_drop.iter_records(N, defect_rate=RATE, seed=5)
    elif source_id.startswith("housing"):
        for item in housing_data.iter_items(N, seed=5, defect_rate=RATE):
            item["_lookups"] = {"ZZBFJG": "某局", "ZZBFJGDM": "11370100MB2850592X"}
            yield item
    else:
        yield from transport_events.events(N, seed=5, defect_rate=RATE)


def _outcome(norm: SpecNormalizer, payload: dict[str, Any]) -> Any:
    try:
        return norm.normalize(payload, "k", "v")
    except RecordRejected as rej:
        return sorted((e.reason_code, e.field, str(e.value)) for e in rej.errors)


@pytest.mark.parametrize(
    "source_id",
    [
        "market_regulation.business_licenses",
        "acceptance.case_records",
        "health.physician_certificates",
        "housing.construction_permits",
        "transport.road_transport_permits",
    ],
)
def test_fast_and_closure_paths_agree(source_id: str) -> None:
    spec = find_spec(source_id)
    fast, slow = SpecNormalizer(spec), SpecNormalizer(spec, fast=False)
    assert fast._values is not None and slow._values is None
    rejected = 0
    for payload in _records(source_id):
        a, b = _outcome(fast, payload), _outcome(slow, payload)
        assert a == b, payload
        rejected += isinstance(a, list)
    assert rejected >= N * RATE * 0.5  # the defects really were exercised
