"""The JSON form and the content hash of a case record, built field by field.

:func:`ehub.records.case_to_json` walks a field table for every record, and
:func:`ehub.records.case_content_hash` builds that JSON and then copies it; the
normalize stage needs both for every case version (the hash when the record is
made, the document when it is stored), about a tenth of its time. These two
functions write the same dictionaries directly. ``tests/ehub/test_case_json.py``
holds them equal to the generic ones, so ``ehub.records`` stays the definition.

Pure: no clock, no I/O.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import msgspec

from ehub.records import CaseRecord

#: Canonical JSON of the content hash (as in :mod:`ehub.records`): sorted keys, no
#: blanks, UTF-8 unescaped.
_CANONICAL_JSON = msgspec.json.Encoder(order="sorted")


def case_document(case: CaseRecord) -> dict[str, Any]:
    """``case_to_json(case)``: the case record's JSON form (keys are field codes)."""
    lineage = case.lineage
    return {
        **_business(case, _local),
        "BBH": case.version,
        "lineage": {
            "source": lineage.source,
            "source_key": lineage.source_key,
            "source_version": lineage.source_version,
            "content_hash": lineage.content_hash,
        },
    }


def case_hash(case: CaseRecord) -> str:
    """``case_content_hash(case)``: sha256 hex over the canonical JSON of everything but
    BBH and lineage, the times in UTC (the same instant with another offset is the
    same content)."""
    return hashlib.sha256(_CANONICAL_JSON.encode(_business(case, _utc))).hexdigest()


def _local(value: datetime) -> str:
    return value.isoformat()


def _utc(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def _business(case: CaseRecord, iso: Any) -> dict[str, Any]:
    accepted, decided, completed = case.accepted_at, case.decided_at, case.completed_at
    return {
        "BJBH": case.case_number,
        "SSBM": case.item_code,
        "SXMC": case.item_name,
        "SSJG": case.agency_name,
        "SSJGDM": case.agency_code,
        "XZQHDM": case.division,
        "BJLX": case.case_type,
        "SQRLX": case.applicant_type,
        "SQRMC": case.applicant_name,
        "SQRZJHM": case.applicant_code,
        "SQRZJLX": case.applicant_code_type,
        "SBQD": case.channel,
        "BJZT": case.state,
        "SBSJ": None if case.submitted_at is None else iso(case.submitted_at),
        "SLSJ": None if accepted is None else iso(accepted),
        "SPSJ": None if decided is None else iso(decided),
        "BJSJ": None if completed is None else iso(completed),
        "CNBJSX": case.promised_days,
        "FDBJSX": case.legal_days,
        "BJJG": case.result,
        "JGZZBS": None if case.result_license_ids is None else list(case.result_license_ids),
        "HCP": case.evaluation,
    }
