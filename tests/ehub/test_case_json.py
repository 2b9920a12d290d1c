"""The direct case JSON and content hash equal the generic ones of ``ehub.records``
(the normalize stage uses the direct ones: the generic walk was a tenth of its time)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings

from ehub import records
from ehub.normalize.case_json import case_document, case_hash
from ehub.records import CaseRecord
from tests.ehub.test_records import cases, make_case


def _same(case: CaseRecord) -> None:
    doc = case_document(case)
    expected = records.case_to_json(case)
    assert doc == expected
    assert list(doc) == list(expected)  # same key order: the same stored text
    assert json.dumps(doc, ensure_ascii=False) == json.dumps(expected, ensure_ascii=False)
    assert case_hash(case) == records.case_content_hash(case)


def test_fixture_case() -> None:
    _same(make_case())


def test_optional_times_offsets_and_empty_results() -> None:
    west = timezone(timedelta(hours=-5))
    _same(make_case(accepted_at=None, decided_at=None, completed_at=None, result=None,
                    result_license_ids=(), evaluation=None, promised_days=None))  # fmt: skip
    _same(make_case(submitted_at=datetime(2023, 3, 1, 1, 0, tzinfo=UTC),
                    completed_at=datetime(2023, 3, 1, 20, 0, 0, 5, tzinfo=west)))  # fmt: skip
    # The same instants with other offsets: the same content hash.
    shifted = make_case(submitted_at=make_case().submitted_at.astimezone(west))
    assert case_hash(shifted) == case_hash(make_case())


@settings(max_examples=200, deadline=None)
@given(cases)
def test_generated_cases(case: CaseRecord) -> None:
    _same(case)
