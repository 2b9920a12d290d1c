"""The per-office view worked out once per office (``view_plan``, what the publisher
uses) gives exactly what the field-by-field rule gives, for every kind of office:
every field or a few, default masking or its own (``none`` included), people and
organizations, odd values (absent surface, lineage that is not an object)."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from ehub.masking import mask_address, mask_id_number, mask_name, mask_phone
from ehub.offices import ALL_FIELDS, SURFACE_FIELDS, Office
from ehub.routing import DEFAULT_MASKING, view_for, view_plan
from tests.ehub.test_routing import OFFICES, generate, make_license

_MASKERS = {"name": mask_name, "id_number": mask_id_number, "phone": mask_phone,
            "address": mask_address}  # fmt: skip
_SUBJECT = {"license": {"CZZT", "CZZTDM"}, "case": {"SQRMC", "SQRZJHM"}}


def reference_view(office: Office, kind: str, document: Mapping[str, Any]) -> dict[str, Any]:
    """The rule as it was written before view_plan: one field at a time."""
    scope = office.fields.get(kind, frozenset())  # type: ignore[call-overload]
    everything = ALL_FIELDS in scope
    if kind == "license":
        person = document.get("CZZTDMLXDM") not in {"001", "099"}
    else:
        person = document.get("SQRLX") != "1"

    def method(code: str) -> str:
        if code in office.masking:
            return office.masking[code]
        if code in _SUBJECT[kind] and not person:
            return "none"
        return DEFAULT_MASKING[kind].get(code, "none")  # type: ignore[index]

    def mask(m: str, value: Any) -> Any:
        return value if m == "none" or value is None else _MASKERS[m](str(value))

    out: dict[str, Any] = {}
    for code, value in document.items():
        if kind == "license" and code == SURFACE_FIELDS:
            whole = everything or SURFACE_FIELDS in scope
            kept = {k: mask(method(k), v) for k, v in dict(value or {}).items()
                    if whole or k in scope}  # fmt: skip
            if whole or any(c.startswith("KZ_") for c in scope):
                out[code] = kept
        elif code == "lineage" and (everything or code in scope) and isinstance(value, Mapping):
            out[code] = {k: v for k, v in value.items() if k != "content_hash"}
        elif everything or code in scope:
            out[code] = mask(method(code), value)
    return out


WHOLE_OWN_POLICY = Office(
    "3706-own", "烟台", "370600", "city", frozenset({"license", "case"}),
    {"license": {"*"}, "case": {"*"}}, include_children=True,
    masking={"CZZT": "none", "KZ_ZS": "address", "ZZBH": "phone", "SQRMC": "none",
             "KZ_FDDBR": "none", "CZZTDM": "id_number"},
)  # fmt: skip
SURFACE_ONLY = Office(
    "3706-kz", "烟台", "370600", "city", frozenset({"license"}),
    {"license": {"ZZBS", "KZ_FDDBR"}}, include_children=True,
)  # fmt: skip


def _odd(doc: dict[str, Any], i: int) -> dict[str, Any]:
    doc = dict(doc)
    if i % 5 == 0 and "KZ" in doc:
        doc["KZ"] = None
    if i % 7 == 0 and "lineage" in doc:
        doc["lineage"] = "not an object"
    if i % 11 == 0:
        doc["CZZT"] = None
    return doc


def test_view_plan_equals_the_field_by_field_rule() -> None:
    offices = [*OFFICES, WHOLE_OWN_POLICY, SURFACE_ONLY]
    checked = 0
    for i, (kind, doc) in enumerate(generate(240, seed=3)):
        doc = _odd(doc, i)
        for office in offices:
            if kind not in office.kinds:
                continue
            want = reference_view(office, kind, doc)
            plan = view_plan(office, kind)  # type: ignore[arg-type]
            for got in (plan(doc), plan(doc), view_for(office, kind, doc)):  # type: ignore[arg-type]
                assert got == want, (office.code, kind, i)
                assert list(got) == list(want)  # the same order of fields
            checked += 1
    assert checked > 500


def test_a_plan_leaves_the_document_as_it_was() -> None:
    doc = make_license(4, "370602001", random.Random(2))
    before = repr(doc)
    for office in (WHOLE_OWN_POLICY, OFFICES[0]):
        view = view_plan(office, "license")(doc)
        assert view["KZ"] is not doc["KZ"] and view["lineage"] is not doc["lineage"]
    assert repr(doc) == before
