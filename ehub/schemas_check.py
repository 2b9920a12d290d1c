"""Validate records against the language-neutral contracts in ``schemas/``.

``validate_*_json`` use JSON Schema draft 2020-12 (jsonschema, with format
checks); ``validate_*_xml`` parse with a hardened parser (no entity
resolution, no network, no DTD, DOCTYPE refused) and validate against the XSD.
Each returns a list of human-readable problems, empty when the instance is
valid; they never raise on bad input. Schemas are loaded once and cached.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import jsonschema
from lxml import etree

import schemas
from ehub.errors import RecordError
from ehub.records_xml import parse_xml

__all__ = [
    "validate_case_json",
    "validate_case_xml",
    "validate_license_json",
    "validate_license_xml",
]


@functools.cache
def _json_validator(name: str) -> jsonschema.protocols.Validator:
    doc = json.loads(schemas.path(f"{name}.schema.json").read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(doc)
    cls.check_schema(doc)
    return cls(doc, format_checker=cls.FORMAT_CHECKER)  # type: ignore[call-arg]


@functools.cache
def _xml_schema(name: str) -> etree.XMLSchema:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    return etree.XMLSchema(etree.parse(str(schemas.path(f"{name}.xsd")), parser=parser))


def _validate_json(name: str, instance: Any) -> list[str]:
    errors = sorted(_json_validator(name).iter_errors(instance), key=lambda e: list(e.path))
    return [f"{'/'.join(str(p) for p in e.path) or '<root>'}: {e.message}" for e in errors]


def _validate_xml(name: str, data: bytes) -> list[str]:
    if not isinstance(data, bytes | bytearray):
        return ["<root>: XML must be given as bytes"]
    try:
        root = parse_xml(bytes(data))
    except RecordError as exc:
        return [f"<root>: {exc.message_en}"]
    schema = _xml_schema(name)
    if schema.validate(root):
        return []
    return [f"line {e.line}: {e.message}" for e in schema.error_log]


def validate_license_json(d: Any) -> list[str]:
    """Problems of a license JSON instance against ``license.schema.json``."""
    return _validate_json("license", d)


def validate_license_xml(b: bytes) -> list[str]:
    """Problems of a license XML document against ``license.xsd``."""
    return _validate_xml("license", b)


def validate_case_json(d: Any) -> list[str]:
    """Problems of a case JSON instance against ``case.schema.json``."""
    return _validate_json("case", d)


def validate_case_xml(b: bytes) -> list[str]:
    """Problems of a case XML document against ``case.xsd``."""
    return _validate_xml("case", b)
