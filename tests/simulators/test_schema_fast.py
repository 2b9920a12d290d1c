"""The compiled schema pre-check: fast for valid items, never a "valid" that jsonschema
would not give (the simulators stay strict), and the same receipts' messages as before.

The platform simulators spent about 0.7 ms per case record in jsonschema; valid items
now pass a generated pre-check instead, and only the others reach jsonschema."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ehub.bench_delivery import sample_case
from simulators.platform_checks import SchemaFile, format_errors
from simulators.schema_fast import compile_precheck
from tests.simulators.payloads import license_json
from tests.simulators.platform_payloads import case_item, case_json, catalog_item, seal_item

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
CLS = jsonschema.Draft202012Validator

#: Values that probe the edges of each keyword's semantics in jsonschema.
TRICKY: list[Any] = [
    None, True, False, 0, 1, -1, 1.0, 0.5, -0.0, 2**70, float("inf"), "", " ", "x",
    "1", "2", "pc", "granted", "completed", "370602", "370602\n", "37060", "3706021234",
    "a" * 65, "a" * 201, "é", "１", "2024-05-06T09:00:00+08:00", "2024-05-06T09:00:00+08:00\n",
    "2024-05-06", "0" * 64, "0" * 64 + "\n", "g" * 64, [], ["x"], ["x", "x"], [1], {}, {"a": 1},
]  # fmt: skip


def _schema(name: str) -> SchemaFile:
    schema = SchemaFile(SCHEMAS / name)
    assert schema.load() is not None
    return schema


def _paths(value: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield at
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*at, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*at, i))


def _replace(doc: Any, path: tuple[Any, ...], value: Any, *, delete: bool = False) -> Any:
    out = copy.deepcopy(doc)
    if not path:
        return value
    node = out
    for part in path[:-1]:
        node = node[part]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return out


def _mutations(doc: Any) -> Iterator[Any]:
    for path in _paths(doc):
        for value in TRICKY:
            yield _replace(doc, path, value)
        if path and isinstance(path[-1], str):
            yield _replace(doc, path, None, delete=True)
        parent = _replace(doc, (), doc)
        node = parent
        for part in path:
            node = node[part]
        if isinstance(node, dict):
            node["UNKNOWN_FIELD"] = "x"
            yield parent


def _same_answer(schema: SchemaFile, instance: Any) -> None:
    """The pre-check never says valid where jsonschema finds errors, and the problems
    listed are those of jsonschema alone."""
    validator = schema.load()
    expected = format_errors(validator.iter_errors(instance))
    if schema._precheck(instance):
        assert expected == [], (instance, expected)
    assert schema.problems(instance) == expected


ITEMS = {
    "case_item.schema.json": lambda: case_item("k1"),
    "catalog_item.schema.json": lambda: catalog_item("k1"),
    "license.schema.json": lambda: license_json(),
}


@pytest.mark.parametrize("name", sorted(ITEMS))
def test_every_mutation_gets_the_answer_of_jsonschema(name: str) -> None:
    schema = _schema(name)
    valid = ITEMS[name]()
    assert schema.problems(valid) == []
    checked = 0
    for instance in _mutations(valid):
        json.dumps(instance)  # only what json.loads can produce
        _same_answer(schema, instance)
        checked += 1
    assert checked > 500


def test_valid_case_items_take_the_fast_path() -> None:
    schema = _schema("case_item.schema.json")
    for n in range(50):
        assert schema._precheck({"idempotency_key": f"k{n}", "case": sample_case(n)})
    assert schema._precheck(case_item("k", case_json(BJSJ=None, BJZT="accepted", BJJG=None)))
    assert schema._precheck(case_item("k", case_json(JGZZBS=[])))


def test_valid_catalog_items_take_the_fast_path() -> None:
    assert _schema("catalog_item.schema.json")._precheck(catalog_item("k1"))
    # Seal registrations use oneOf: jsonschema decides every one of them.
    assert not _schema("seal_item.schema.json")._precheck(seal_item("k1"))


def test_every_schema_file_compiles() -> None:
    def read(name: str) -> Any:
        return json.loads(next(SCHEMAS.rglob(name)).read_text("utf-8"))

    for path in sorted(SCHEMAS.glob("*.json")):
        check = compile_precheck(json.loads(path.read_text("utf-8")), path.name, read, CLS)
        assert check("not an object") in (True, False)


def test_unsupported_keywords_are_never_sure() -> None:
    def read(name: str) -> Any:
        raise LookupError(name)

    never = [
        {"oneOf": [{"type": "string"}, {"type": "integer"}]},
        {"not": {"type": "string"}},
        {"type": "object", "patternProperties": {"^a": {"type": "string"}}},
        {"enum": [{"a": 1}]},
        {"$ref": "missing.schema.json"},
        {"type": "integer"},  # for a float with an integral value
    ]
    for schema in never:
        assert compile_precheck(schema, "x.json", read, CLS)(1.0) is False
    draft7 = {"$schema": "http://json-schema.org/draft-07/schema#", "type": "string"}
    assert compile_precheck(draft7, "x.json", read, CLS)("x") is False
    # An unsupported property keyword makes only that property unsure.
    partial = {"type": "object", "properties": {"a": {"not": {}}, "b": {"type": "string"}}}
    check = compile_precheck(partial, "x.json", read, CLS)
    assert check({"b": "x"}) is True
    assert check({"a": 1, "b": "x"}) is False


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=3),
    max_leaves=6,
)  # fmt: skip
_CASE_SCHEMA = _schema("case_item.schema.json")
_CASE_PATHS = list(_paths(case_item("k1")))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(_CASE_PATHS), value=JSON)
def test_random_values_anywhere_in_a_case_item(path: tuple[Any, ...], value: Any) -> None:
    _same_answer(_CASE_SCHEMA, _replace(case_item("k1"), path, value))
