"""Tests of ehub.records: JSON/XML round trips, content hashes, strict parsing."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import string
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ehub import codelists, identifiers, records, records_xml
from ehub.errors import RecordError
from ehub.records import CaseRecord, License, LicenseStatus, Lineage, SealMark
from ehub.schemas_check import (
    validate_case_json,
    validate_case_xml,
    validate_license_json,
    validate_license_xml,
)

CST = timezone(timedelta(hours=8))
ISSUER = "11370800MB28559184"
TYPE = "11100000000013338W001"
IDENT = identifiers.make_license_identifier(TYPE, ISSUER, "2023000001")
LINEAGE = Lineage("dept_amr", "row-1", "7", "a" * 64)


def make_license(**changes: object) -> License:
    lic = License(
        identifier=IDENT,
        type_code=TYPE,
        type_name="营业执照",
        number="91370000163044841F",
        issuer_name="济南市市场监督管理局",
        issuer_code=ISSUER,
        issuer_division="370102",
        issue_date=date(2023, 3, 1),
        valid_from=date(2023, 3, 1),
        valid_until=date(2043, 2, 28),
        holder_name="山东某某有限公司",
        holder_code="91370000163044841F",
        holder_code_type="001",
        holder_division="370102001",
        status=LicenseStatus.VALID,
        version=1,
        lineage=LINEAGE,
        surface={"KZ_FDDBR": "张三", "KZ_ZCZB": "100万元"},
        related_case="11370800MB285591843370117002011202303010001",
        seals=(
            SealMark(
                "济南市市场监督管理局", "2023-03-01T02:00:00Z", "济南市市场监督管理局电子印章"
            ),
        ),
    )
    return dataclasses.replace(lic, **changes)  # type: ignore[arg-type]


def make_case(**changes: object) -> CaseRecord:
    case = CaseRecord(
        case_number="11370800MB285591843370117002011202303010001",
        item_code="11370800MB285591843370117002011",
        item_name="公司设立登记",
        agency_name="济南市市场监督管理局",
        agency_code=ISSUER,
        division="370102",
        case_type="2",
        applicant_type="1",
        applicant_name="山东某某有限公司",
        applicant_code="91370000163044841F",
        applicant_code_type="001",
        channel="window",
        state="completed",
        submitted_at=datetime(2023, 3, 1, 9, 0, tzinfo=CST),
        accepted_at=datetime(2023, 3, 1, 9, 30, tzinfo=CST),
        decided_at=datetime(2023, 3, 1, 15, 0, 0, 123000, tzinfo=CST),
        completed_at=None,
        promised_days=3,
        legal_days=15,
        result="granted",
        result_license_ids=(IDENT,),
        evaluation="5",
        version=2,
        lineage=LINEAGE,
    )
    return dataclasses.replace(case, **changes)  # type: ignore[arg-type]


# --- vocabularies ----------------------------------------------------------------


def test_license_status_matches_code_list() -> None:
    assert [s.value for s in LicenseStatus] == list(codelists.load("license_status").codes)


def test_fixture_codes_are_in_code_lists() -> None:
    case = make_case()
    for name, value in [
        ("case_types", case.case_type),
        ("applicant_types", case.applicant_type),
        ("channels", case.channel),
        ("case_states", case.state),
        ("case_results", case.result),
        ("evaluations", case.evaluation),
        ("holder_code_types", case.applicant_code_type),
    ]:
        assert value in codelists.load(name), name


# --- JSON --------------------------------------------------------------------------


def test_license_json_round_trip_and_shape() -> None:
    lic = make_license()
    d = records.license_to_json(lic)
    assert d["ZZBFRQ"] == "2023-03-01" and d["ZZZT"] == "valid" and d["BBH"] == 1
    assert d["CZZTDMLX"] == "统一社会信用代码"
    assert d["QZ"] == [
        {
            "ZZQZR": "济南市市场监督管理局",
            "ZZQZSJ": "2023-03-01T02:00:00Z",
            "ZZQZMC": "济南市市场监督管理局电子印章",
        }
    ]
    assert validate_license_json(d) == []
    assert records.license_from_json(d) == lic


def test_long_term_license_has_null_end_date() -> None:
    lic = make_license(valid_until=None, related_case=None, seals=(), surface={})
    d = records.license_to_json(lic)
    assert d["ZZYXQJZRQ"] is None and d["GLBJBH"] is None and d["QZ"] == [] and d["KZ"] == {}
    assert validate_license_json(d) == []
    assert records.license_from_json(d) == lic


def test_case_json_round_trip_keeps_offsets() -> None:
    case = make_case()
    d = records.case_to_json(case)
    assert d["SBSJ"] == "2023-03-01T09:00:00+08:00"
    assert d["BJSJ"] is None and d["JGZZBS"] == [IDENT]
    assert validate_case_json(d) == []
    assert records.case_from_json(d) == case


def test_license_is_frozen() -> None:
    lic = make_license()
    with pytest.raises(dataclasses.FrozenInstanceError):
        lic.version = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        lic.surface["KZ_X"] = "y"  # type: ignore[index]


@pytest.mark.parametrize(
    ("mutate", "reason", "field"),
    [
        (lambda d: d.pop("ZZBH"), "E_REQUIRED_MISSING", "ZZBH"),
        (lambda d: d.update(EXTRA=1), "E_SCHEMA_INVALID", "license"),
        (lambda d: d.update(ZZBFRQ="2023-02-30"), "E_DATE_INVALID", "ZZBFRQ"),
        (lambda d: d.update(ZZBFRQ="20230301"), "E_DATE_INVALID", "ZZBFRQ"),
        (lambda d: d.update(BBH="1"), "E_VALUE_INVALID", "BBH"),
        (lambda d: d.update(BBH=True), "E_VALUE_INVALID", "BBH"),
        (lambda d: d.update(ZZZT="active"), "E_CODE_UNKNOWN", "ZZZT"),
        (lambda d: d.update(CZZT=5), "E_VALUE_INVALID", "CZZT"),
        (lambda d: d["lineage"].pop("source"), "E_REQUIRED_MISSING", "lineage.source"),
        (lambda d: d["QZ"][0].update(x="1"), "E_SCHEMA_INVALID", "QZ"),
        (lambda d: d.update(KZ=[]), "E_VALUE_INVALID", "KZ"),
    ],
)
def test_license_from_json_is_strict(mutate, reason: str, field: str) -> None:  # type: ignore[no-untyped-def]
    d = records.license_to_json(make_license())
    mutate(d)
    with pytest.raises(RecordError) as e:
        records.license_from_json(d)
    assert (e.value.reason_code, e.value.field) == (reason, field)


def test_case_from_json_rejects_naive_datetimes() -> None:
    d = records.case_to_json(make_case())
    d["SBSJ"] = "2023-03-01T09:00:00"
    with pytest.raises(RecordError) as e:
        records.case_from_json(d)
    assert (e.value.reason_code, e.value.field) == ("E_DATE_INVALID", "SBSJ")
    with pytest.raises(RecordError):
        make_case(submitted_at=datetime(2023, 3, 1, 9, 0))


# --- content hash ----------------------------------------------------------------


def test_license_hash_ignores_version_lineage_seals_but_not_status() -> None:
    lic = make_license()
    h = records.license_content_hash(lic)
    assert len(h) == 64 and int(h, 16) >= 0
    assert (
        records.license_content_hash(
            make_license(version=9, lineage=Lineage("other", "k", "v", "b" * 64), seals=())
        )
        == h
    )
    assert records.license_content_hash(make_license(status=LicenseStatus.REVOKED)) != h
    assert records.license_content_hash(make_license(surface={"KZ_FDDBR": "李四"})) != h
    assert records.license_content_hash(make_license(valid_until=None)) != h


def test_license_hash_is_sha256_of_the_documented_canonical_json() -> None:
    # The canonical form written out independently: sorted keys, no blanks,
    # UTF-8 unescaped; BBH, lineage, QZ and the derived CZZTDMLX left out.
    expected = (
        '{"CZZT":"山东某某有限公司","CZZTDM":"91370000163044841F","CZZTDMLXDM":"001",'
        '"CZZTQHDM":"370102001","GLBJBH":"11370800MB285591843370117002011202303010001",'
        '"KZ":{"KZ_FDDBR":"张三","KZ_ZCZB":"100万元"},"ZZBFJG":"济南市市场监督管理局",'
        f'"ZZBFJGDM":"{ISSUER}","ZZBFJGQHDM":"370102","ZZBFRQ":"2023-03-01",'
        f'"ZZBH":"91370000163044841F","ZZBS":"{IDENT}","ZZLXDM":"{TYPE}","ZZMC":"营业执照",'
        '"ZZYXQJZRQ":"2043-02-28","ZZYXQQSRQ":"2023-03-01","ZZZT":"valid"}'
    )
    digest = hashlib.sha256(expected.encode("utf-8")).hexdigest()
    assert records.license_content_hash(make_license()) == digest


def test_case_hash_is_offset_independent() -> None:
    case = make_case()
    h = records.case_content_hash(case)
    utc = make_case(submitted_at=case.submitted_at.astimezone(UTC))
    assert records.case_content_hash(utc) == h
    assert (
        records.case_content_hash(make_case(version=7, lineage=Lineage("x", "y", "z", "c" * 64)))
        == h
    )
    assert records.case_content_hash(make_case(state="withdrawn")) != h
    assert (
        records.case_content_hash(make_case(submitted_at=case.submitted_at + timedelta(seconds=1)))
        != h
    )


# --- XML ---------------------------------------------------------------------------


def test_license_xml_round_trip_and_determinism() -> None:
    lic = make_license()
    x = records_xml.license_to_xml(lic)
    assert x.startswith(b"<?xml") and b'xmlns="urn:ehub:license:1"' in x
    assert b'<Item code="KZ_FDDBR">' in x and "营业执照".encode() in x
    assert records_xml.license_to_xml(records_xml.license_from_xml(x)) == x
    assert records_xml.license_from_xml(x) == lic
    assert validate_license_xml(x) == []


def test_null_fields_are_absent_elements() -> None:
    x = records_xml.license_to_xml(make_license(valid_until=None, related_case=None))
    assert b"ZZYXQJZRQ" not in x and b"GLBJBH" not in x
    assert records_xml.license_from_xml(x).valid_until is None
    assert validate_license_xml(x) == []


def test_case_xml_round_trip() -> None:
    case = make_case()
    x = records_xml.case_to_xml(case)
    assert records_xml.case_from_xml(x) == case
    assert validate_case_xml(x) == []


def test_xml_control_character_is_a_record_error() -> None:
    with pytest.raises(RecordError) as e:
        records_xml.license_to_xml(make_license(holder_name="a\x01b"))
    assert e.value.reason_code == "E_VALUE_INVALID"


@pytest.mark.parametrize(
    "doc",
    [
        b"<DZZZ xmlns='urn:ehub:license:1'><ZZBS>",
        b"<?xml version='1.0'?><!DOCTYPE d [<!ENTITY e SYSTEM 'file:///etc/passwd'>]>"
        b"<DZZZ xmlns='urn:ehub:license:1'><CZZT>&e;</CZZT></DZZZ>",
        b"<other xmlns='urn:ehub:license:1'/>",
        b"<DZZZ xmlns='urn:ehub:license:1'><Unknown/></DZZZ>",
    ],
)
def test_bad_xml_is_rejected(doc: bytes) -> None:
    with pytest.raises(RecordError) as e:
        records_xml.license_from_xml(doc)
    assert e.value.reason_code == "E_SCHEMA_INVALID"
    assert b"root:" not in repr(e.value).encode()


# --- properties --------------------------------------------------------------------

ALNUM = string.digits + string.ascii_uppercase
USCC_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
# XML 1.0 cannot carry most control characters; tab, newline and CR must survive.
text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff")
    | st.sampled_from("\t\n\r"),
    min_size=1,
    max_size=40,
)


@st.composite
def usccs(draw: st.DrawFn) -> str:
    body = draw(st.text(alphabet=USCC_CHARSET, min_size=17, max_size=17))
    return body + identifiers.uscc_check_char(body)


dates = st.dates(min_value=date(1990, 1, 1), max_value=date(2060, 12, 31))
aware = st.datetimes(
    min_value=datetime(2000, 1, 1),
    max_value=datetime(2050, 1, 1),
    timezones=st.sampled_from([CST, UTC]),
)
idents = st.builds(
    identifiers.make_license_identifier,
    st.text(alphabet=ALNUM, min_size=21, max_size=21),
    usccs(),
    st.text(alphabet=ALNUM, min_size=1, max_size=32),
)
lineages = st.builds(
    Lineage,
    st.from_regex(r"[a-z_]{1,20}", fullmatch=True),
    text,
    st.text(max_size=10, alphabet=ALNUM),
    st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
)
codes = st.from_regex(r"[0-9A-Za-z-]{1,30}", fullmatch=True)
divisions = st.from_regex(r"[0-9]{6}([0-9]{3})?", fullmatch=True)


def _codes(name: str) -> st.SearchStrategy[str]:
    return st.sampled_from(codelists.load(name).codes)


licenses = st.builds(
    License,
    identifier=idents,
    type_code=st.text(alphabet=ALNUM, min_size=21, max_size=21),
    type_name=text,
    number=text,
    issuer_name=text,
    issuer_code=usccs(),
    issuer_division=st.from_regex(r"[0-9]{6}", fullmatch=True),
    issue_date=dates,
    valid_from=dates,
    valid_until=st.none() | dates,
    holder_name=text,
    holder_code=codes,
    holder_code_type=st.from_regex(r"[0-9]{3}", fullmatch=True),
    holder_division=divisions,
    status=st.sampled_from(LicenseStatus),
    version=st.integers(1, 10**6),
    lineage=lineages,
    surface=st.dictionaries(st.from_regex(r"KZ_[A-Z0-9_]{1,10}", fullmatch=True), text, max_size=4),
    related_case=st.none() | st.from_regex(r"[0-9A-Za-z]{1,43}", fullmatch=True),
    seals=st.lists(
        st.builds(
            SealMark,
            text,
            aware.map(lambda d: d.astimezone(UTC).isoformat().replace("+00:00", "Z")),
            text,
        ),
        max_size=2,
    ).map(tuple),
)

cases = st.builds(
    CaseRecord,
    case_number=st.from_regex(r"[0-9A-Za-z]{1,64}", fullmatch=True),
    item_code=st.builds(
        lambda u, s: u + s, usccs(), st.text(alphabet=ALNUM, min_size=1, max_size=13)
    ),
    item_name=text,
    agency_name=text,
    agency_code=usccs(),
    division=divisions,
    case_type=_codes("case_types"),
    applicant_type=_codes("applicant_types"),
    applicant_name=text,
    applicant_code=codes,
    applicant_code_type=_codes("holder_code_types"),
    channel=_codes("channels"),
    state=_codes("case_states"),
    submitted_at=aware,
    accepted_at=st.none() | aware,
    decided_at=st.none() | aware,
    completed_at=st.none() | aware,
    promised_days=st.none() | st.integers(0, 365),
    legal_days=st.none() | st.integers(0, 365),
    result=st.none() | _codes("case_results"),
    result_license_ids=st.lists(idents, max_size=3, unique=True).map(tuple),
    evaluation=st.none() | _codes("evaluations"),
    version=st.integers(1, 10**6),
    lineage=lineages,
)


@settings(max_examples=60, deadline=None)
@given(licenses)
def test_generated_licenses_round_trip_and_validate(lic: License) -> None:
    d = records.license_to_json(lic)
    assert validate_license_json(d) == []
    assert records.license_from_json(d) == lic
    x = records_xml.license_to_xml(lic)
    assert validate_license_xml(x) == []
    assert records_xml.license_from_xml(x) == lic
    assert records.license_content_hash(
        records_xml.license_from_xml(x)
    ) == records.license_content_hash(lic)


@settings(max_examples=60, deadline=None)
@given(cases)
def test_generated_cases_round_trip_and_validate(case: CaseRecord) -> None:
    d = records.case_to_json(case)
    assert validate_case_json(d) == []
    assert records.case_from_json(d) == case
    x = records_xml.case_to_xml(case)
    assert validate_case_xml(x) == []
    assert records_xml.case_from_xml(x) == case


def test_xml_keeps_carriage_returns_tabs_and_blank_values() -> None:
    lic = make_license(holder_name="a\r\nb\tc ", surface={"KZ_JYFW": " \r "}, number=" ")
    x = records_xml.license_to_xml(lic)
    assert records_xml.license_from_xml(x) == lic


@pytest.mark.parametrize(
    ("old", "new", "reason_code"),
    [
        (b"<BBH>1</BBH>", b"<BBH>1_0</BBH>", "E_VALUE_INVALID"),
        (b"<BBH>1</BBH>", b"<BBH>+1</BBH>", "E_VALUE_INVALID"),
        (b"<ZZMC>", b"<ZZMC xmlns=''>", "E_SCHEMA_INVALID"),  # element outside the namespace
        (b"<BBH>1</BBH>", b"<BBH>1</BBH><BBH>2</BBH>", "E_SCHEMA_INVALID"),  # repeated
    ],
)
def test_xml_structure_is_checked(old: bytes, new: bytes, reason_code: str) -> None:
    x = records_xml.license_to_xml(make_license())
    assert old in x
    with pytest.raises(RecordError) as e:
        records_xml.license_from_xml(x.replace(old, new, 1))
    assert e.value.reason_code == reason_code


def test_oversize_xml_is_refused() -> None:
    with pytest.raises(RecordError) as e:
        records_xml.parse_xml(b"<a>" + b" " * records_xml.MAX_XML_BYTES + b"</a>")
    assert e.value.reason_code == "E_SCHEMA_INVALID"


def test_status_is_coerced_and_checked() -> None:
    assert make_license(status="revoked").status is LicenseStatus.REVOKED
    with pytest.raises(RecordError) as e:
        make_license(status="active")
    assert e.value.reason_code == "E_CODE_UNKNOWN"


@given(
    surface=st.dictionaries(
        st.from_regex(r"KZ_[A-Z]{1,5}", fullmatch=True), st.text(max_size=20), max_size=4
    ),
    until=st.one_of(st.none(), st.dates(min_value=date(2030, 1, 1))),
    related=st.one_of(st.none(), st.text(min_size=1, max_size=10)),
    status=st.sampled_from(list(LicenseStatus)),
)
@settings(max_examples=60, deadline=None)
def test_fast_license_content_hash_equals_the_generic_form(
    surface: dict[str, str], until: date | None, related: str | None, status: LicenseStatus
) -> None:
    lic = make_license(surface=surface, valid_until=until, related_case=related, status=status)
    assert records.license_content_hash(lic) == records._license_content_hash_generic(lic)


_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(_TEXT, st.none() | _TEXT | st.dictionaries(_TEXT, _TEXT | st.none())))
def test_canonical_json_is_byte_for_byte_the_json_module_form(body: dict) -> None:
    # Content hashes are defined on json.dumps(sort_keys, compact, unescaped);
    # the fast encoder must give the same bytes for any text, control characters included.
    expected = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert records._CANONICAL_JSON.encode(body) == expected.encode("utf-8")
