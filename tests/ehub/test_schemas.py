"""Tests of the schemas in schemas/ and of ehub.schemas_check."""

from __future__ import annotations

import copy
import json
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest
from lxml import etree

import schemas
from ehub import codelists, identifiers, records, records_xml
from ehub.records import CaseRecord, License, LicenseStatus, Lineage
from ehub.schemas_check import (
    validate_case_json,
    validate_case_xml,
    validate_license_json,
    validate_license_xml,
)

CST = timezone(timedelta(hours=8))
ISSUER = "11370800MB28559184"
TYPE = "11100000000013338W001"
IDENT = identifiers.make_license_identifier(TYPE, ISSUER, "A1")
LIN = Lineage("dept_amr", "k", "1", "0" * 64)

LICENSE = License(
    IDENT,
    TYPE,
    "营业执照",
    "No.1",
    "济南市市场监督管理局",
    ISSUER,
    "370100",
    date(2024, 1, 2),
    date(2024, 1, 2),
    None,
    "某公司",
    "91370000163044841F",
    "001",
    "370102",
    LicenseStatus.VALID,
    1,
    LIN,
    {"KZ_FDDBR": "张三"},
)
CASE = CaseRecord(
    "B1",
    ISSUER + "3370117002011",
    "设立登记",
    "济南市市场监督管理局",
    ISSUER,
    "370102",
    "1",
    "0",
    "张三",
    "11010519491231002X",
    "111",
    "mobile",
    "submitted",
    datetime(2024, 1, 2, 8, 0, tzinfo=CST),
    None,
    None,
    None,
    None,
    None,
    None,
    (),
    None,
    1,
    LIN,
)


def lic_json() -> dict[str, Any]:
    return copy.deepcopy(records.license_to_json(LICENSE))


def case_json() -> dict[str, Any]:
    return copy.deepcopy(records.case_to_json(CASE))


def test_schema_files_are_shipped_and_well_formed() -> None:
    for name in ("license.schema.json", "case.schema.json"):
        doc = json.loads(schemas.path(name).read_text(encoding="utf-8"))
        assert doc["$schema"].endswith("2020-12/schema")
        assert doc["additionalProperties"] is False
    for name in ("license.xsd", "case.xsd"):
        etree.XMLSchema(etree.parse(str(schemas.path(name))))
    with pytest.raises(FileNotFoundError):
        schemas.path("nope.xsd")


def test_valid_instances() -> None:
    assert validate_license_json(lic_json()) == []
    assert validate_case_json(case_json()) == []
    assert validate_license_xml(records_xml.license_to_xml(LICENSE)) == []
    assert validate_case_xml(records_xml.case_to_xml(CASE)) == []


def test_json_required_fields_match_the_record() -> None:
    lic = json.loads(schemas.path("license.schema.json").read_text(encoding="utf-8"))
    assert set(lic["required"]) == set(lic_json()) == set(lic["properties"])
    case = json.loads(schemas.path("case.schema.json").read_text(encoding="utf-8"))
    assert set(case["required"]) == set(case_json()) == set(case["properties"])


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("ZZBS", "1.2.156.3005.2.X.Y.Z.001.A"),
        ("ZZBFJGDM", "11370800MB2855918O"),  # O is not in the USCC charset
        ("ZZBFJGQHDM", "3701"),
        ("CZZTQHDM", "3701020"),
        ("ZZBFRQ", "2024-02-30"),
        ("ZZBFRQ", "2024/01/02"),
        ("ZZZT", "active"),
        ("BBH", 0),
        ("KZ", {"fddbr": "x"}),
        ("ZZMC", ""),
        ("ZZBFJG", "长" * 201),
        ("extra", 1),
        ("lineage", {"source": "s", "source_key": "k", "source_version": "v", "content_hash": "x"}),
        ("QZ", [{"ZZQZR": "a", "ZZQZSJ": "2024-01-02 08:00", "ZZQZMC": "b"}]),
    ],
)
def test_invalid_license_json(key: str, value: object) -> None:
    d = lic_json()
    d[key] = value
    problems = validate_license_json(d)
    assert problems, f"{key}={value!r} should be rejected"


def test_missing_license_field_is_named() -> None:
    d = lic_json()
    del d["CZZTDM"]
    assert any("CZZTDM" in p for p in validate_license_json(d))


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("SBQD", "fax"),
        ("BJZT", "done"),
        ("BJLX", "3"),
        ("SBSJ", "2024-01-02T08:00:00"),  # no offset
        ("CNBJSX", -1),
        ("JGZZBS", [IDENT, IDENT]),
        ("SSJGDM", "123"),
        ("HCP", "6"),
    ],
)
def test_invalid_case_json(key: str, value: object) -> None:
    d = case_json()
    d[key] = value
    assert validate_case_json(d)


@pytest.mark.parametrize(
    ("schema_file", "key", "codelist"),
    [
        ("license.schema.json", "ZZZT", "license_status"),
        ("case.schema.json", "BJLX", "case_types"),
        ("case.schema.json", "SQRLX", "applicant_types"),
        ("case.schema.json", "SBQD", "channels"),
        ("case.schema.json", "BJZT", "case_states"),
        ("case.schema.json", "BJJG", "case_results"),
        ("case.schema.json", "HCP", "evaluations"),
    ],
)
def test_json_schema_enums_match_code_lists(schema_file: str, key: str, codelist: str) -> None:
    doc = json.loads(schemas.path(schema_file).read_text(encoding="utf-8"))
    enum = [v for v in doc["properties"][key]["enum"] if v is not None]
    assert enum == list(codelists.load(codelist).codes)


@pytest.mark.parametrize(
    ("xsd", "type_name", "codelist"),
    [
        ("license.xsd", "Status", "license_status"),
        ("case.xsd", "CaseType", "case_types"),
        ("case.xsd", "ApplicantType", "applicant_types"),
        ("case.xsd", "Channel", "channels"),
        ("case.xsd", "CaseState", "case_states"),
        ("case.xsd", "CaseResult", "case_results"),
        ("case.xsd", "Evaluation", "evaluations"),
    ],
)
def test_xsd_enums_match_code_lists(xsd: str, type_name: str, codelist: str) -> None:
    tree = etree.parse(str(schemas.path(xsd)))
    ns = {"xs": "http://www.w3.org/2001/XMLSchema"}
    values = tree.xpath(
        f"//xs:simpleType[@name='{type_name}']//xs:enumeration/@value", namespaces=ns
    )
    assert values == list(codelists.load(codelist).codes)


def _mutate_xml(
    xml: bytes, path: str, ns: str, text: str | None = None, drop: bool = False
) -> bytes:
    root = etree.fromstring(xml)
    el = root.find(path, {"r": ns})
    assert el is not None
    if drop:
        root.remove(el)
    else:
        el.text = text
    return etree.tostring(root)


@pytest.mark.parametrize(
    ("path", "text", "drop"),
    [
        ("r:ZZBS", "nope", False),
        ("r:ZZBFRQ", "2024-02-30", False),
        ("r:ZZZT", "active", False),
        ("r:BBH", "0", False),
        ("r:CZZT", None, True),
        ("r:CZZTQHDM", "37", False),
    ],
)
def test_invalid_license_xml(path: str, text: str | None, drop: bool) -> None:
    bad = _mutate_xml(records_xml.license_to_xml(LICENSE), path, records.LICENSE_NS, text, drop)
    assert validate_license_xml(bad)


def test_license_xml_duplicate_surface_code_is_invalid() -> None:
    x = records_xml.license_to_xml(LICENSE).replace(
        b"</KZ>", b'<Item code="KZ_FDDBR">again</Item></KZ>'
    )
    assert validate_license_xml(x)


def test_invalid_case_xml() -> None:
    x = _mutate_xml(records_xml.case_to_xml(CASE), "r:SBQD", records.CASE_NS, "fax")
    assert validate_case_xml(x)
    x = _mutate_xml(records_xml.case_to_xml(CASE), "r:SBSJ", records.CASE_NS, "2024-01-02T08:00:00")
    assert validate_case_xml(x)


@pytest.mark.parametrize(
    "doc",
    [
        b"not xml",
        b"<?xml version='1.0'?><!DOCTYPE DZZZ [<!ENTITY a 'aaaaaaaaaa'><!ENTITY b '&a;&a;&a;&a;'>]>"
        b"<DZZZ xmlns='urn:ehub:license:1'>&b;</DZZZ>",
        b"<!DOCTYPE x SYSTEM 'http://127.0.0.1:9/x.dtd'><DZZZ xmlns='urn:ehub:license:1'/>",
    ],
)
def test_hostile_or_malformed_xml_is_reported_not_raised(doc: bytes) -> None:
    problems = validate_license_xml(doc)
    assert problems and len(problems[0]) < 500


def test_xml_must_be_bytes() -> None:
    assert validate_case_xml("<BJ/>")  # type: ignore[arg-type]
