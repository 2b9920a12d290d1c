"""The platform simulators' batch processing after its speed-ups: one look-up of a batch's
keys and identities (repeats inside a batch seen as the database would show them),
msgspec where it gives the bytes of ``json``, and schemas compiled at start-up."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.responses import JSONResponse

from simulators.platform_app import ReceiptsResponse
from simulators.platform_checks import canonical_json, decode_json
from simulators.platform_core import case_kind, process, warm_up
from simulators.platform_store import PlatformStore
from simulators.provincial import create_app
from tests.simulators.platform_payloads import case_item, case_json


def _statuses(receipts: list[dict[str, Any]]) -> list[tuple[str, str | None, bool]]:
    return [(r["status"], r.get("error_code"), r["duplicate"]) for r in receipts]


def test_repeats_inside_one_batch_and_across_batches(tmp_path: Path) -> None:
    store, kind = PlatformStore(tmp_path, "p.sqlite3"), case_kind(100)
    a, a2, b, c = (
        case_json("0001"),
        case_json("0001", HCP="4"),
        case_json("0002"),
        case_json("0003"),
    )
    batch = [
        ("k1", case_item("k1", a)),
        ("k1", case_item("k1", a)),  # the same key and content: the first receipt again
        ("k2", case_item("k2", b)),
        ("k2", case_item("k2", a2)),  # the same key, other content
        ("k3", case_item("k3", c)),
        ("k4", case_item("k4", c)),  # the same identity under another key
        ("k5", case_item("k5", case_json("0004", BJZT="bogus"))),  # schema
    ]
    receipts = process(store, kind, batch)
    assert _statuses(receipts) == [
        ("accepted", None, False),
        ("accepted", None, True),
        ("accepted", None, False),
        ("rejected", "IDEMPOTENCY_MISMATCH", False),
        ("accepted", None, False),
        ("rejected", "CONFLICT", False),
        ("rejected", "SCHEMA", False),
    ]
    assert receipts[1]["receipt_id"] == receipts[0]["receipt_id"]
    assert receipts[5]["message"].endswith(f"(receipt {receipts[4]['receipt_id']})")
    later = process(store, kind, [("k1", case_item("k1", a)), ("k9", case_item("k9", b))])
    assert _statuses(later) == [("accepted", None, True), ("rejected", "CONFLICT", False)]
    assert later[0]["receipt_id"] == receipts[0]["receipt_id"]
    stats = store.stats(["case"])["kinds"]["case"]
    assert (stats["versions"], stats["accepted"], stats["duplicates"]) == (3, 3, 2)


@pytest.mark.parametrize(
    "value",
    [
        case_json(),
        {"b": [1, None, True, {"二": '\u2028\x7f\x00\n"\\'}], "a": 2**70, "": "😀"},
        {"f": 1e16, "g": [0.1, -0.0]},  # floats: json.dumps itself
        {"s": "\ud800"},  # a lone surrogate: json.dumps keeps it
        [],
    ],
)
def test_canonical_json_is_json_dumps(value: Any) -> None:
    assert canonical_json(value) == json.dumps(
        value, ensure_ascii=False, sort_keys=True, separators=(",", ":")
    )


@pytest.mark.parametrize(
    "raw", [b'{"items": [{"a": 1.5, "b": "\\u4e8c"}]}', b"NaN", b'{"x": 1e400}', b'"\\ud800"']
)
def test_decode_json_is_json_loads(raw: bytes) -> None:
    assert repr(decode_json(raw)) == repr(json.loads(raw))
    with pytest.raises(json.JSONDecodeError):
        decode_json(b'{"items": [1,]}')


def test_receipts_are_the_bytes_of_a_json_response() -> None:
    receipts = {"receipts": [
        {"idempotency_key": "k", "status": "accepted", "receipt_id": "RCPT-1",
         "registration_no": "BA-二", "duplicate": False},
        {"idempotency_key": "k2", "status": "rejected", "error_code": "SCHEMA",
         "message": 'case/BJZT: "x" is not one of […]', "duplicate": False},
    ]}  # fmt: skip
    assert ReceiptsResponse(receipts).body == JSONResponse(receipts).body
    with pytest.raises(ValueError):  # not plain JSON: JSONResponse's own refusal
        ReceiptsResponse({"receipts": [{"x": float("nan")}]})


def test_warm_up_compiles_the_schemas_before_the_first_request(tmp_path: Path) -> None:
    app = create_app(tmp_path, token="t", signature_check="structural")
    kinds = list(app.state.kinds.values())
    schemas = [s for k in kinds for s in k.schemas]
    assert schemas and all(s._validator is None for s in schemas)
    warm_up(kinds)
    assert all(s._validator is not None for s in schemas)
