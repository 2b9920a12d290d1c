"""Field mappings compiled from a spec: every step (source, transform, regex, lookup,
code list, date/datetime/integer/split, default) and the errors they raise."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ehub.errors import RecordError
from ehub.normalize import RecordRejected
from ehub.normalize.canonical import SpecNormalizer
from ehub.records import License
from ehub.sources.build import LookupResolver
from ehub.sources.mapping import LOOKUPS_KEY, compile_field, compile_mapping, path_getter
from ehub.sources.spec import FieldMap, SourceSpec, spec_from_dict

LICENSE_MAPPING: dict[str, Any] = {
    "ZZBH": {"from": "ZCH"},
    "ZZBFJG": {"from": "DJJG"},
    "ZZBFJGDM": {"from": "DJJGDM"},
    "ZZBFRQ": {"from": "FZRQ", "date": ["%Y-%m-%d"]},
    "CZZT": {"from": "QYMC"},
    "CZZTDM": {"from": "TYSHXYDM"},
    "CZZTDMLXDM": {"const": "001"},
    "CZZTQHDM": {"from": "XZQHDM"},
    "ZZZT": {"from": "JLZT", "codelist": "jlzt"},
}


def make_spec(**mapping: Any) -> SourceSpec:
    return spec_from_dict(
        {
            "department": {"code": "market_regulation", "name": "山东省市场监督管理局"},
            "source": "mapping_test",
            "kind": "sql",
            "connection": "c",
            "record_kind": "license",
            "license_type": "营业执照",
            "key": "ID",
            "cursor": {"field": "GXSJ"},
            "sql": {"table": "T"},
            "codelists": {"jlzt": {"1": "valid", "2": "revoked", "3": "cancelled"}},
            "mapping": {**LICENSE_MAPPING, **mapping},
        }
    )


SPEC = make_spec()


def value(fm: Mapping[str, Any], payload: Mapping[str, Any], target: str = "KZ_X") -> Any:
    return compile_field(target, FieldMap.model_validate(fm), SPEC).get(payload)


def error(fm: Mapping[str, Any], payload: Mapping[str, Any], target: str = "KZ_X") -> RecordError:
    with pytest.raises(RecordError) as info:
        value(fm, payload, target)
    return info.value


# --- transforms -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("transform", "raw", "expected"),
    [
        (["trim"], "  济南 \t", "济南"),
        (["trim"], "\u3000济南市\u3000", "济南市"),  # ideographic (full-width) space
        (["halfwidth"], "３７０１０２", "370102"),
        (["halfwidth"], "ＡＢｃ－１（２）", "ABc-1(2)"),
        (["halfwidth"], "济南\u3000市", "济南 市"),
        (["halfwidth", "upper"], "９１３７ｘ", "9137X"),
        (["upper"], "91370000163044841f", "91370000163044841F"),
        (["lower"], "ABC", "abc"),
        (["remove_spaces"], " 3701 02\u3000\t9 ", "370102" + "9"),
        (["strip_zeros"], "000120", "120"),
        (["strip_zeros"], "000", ""),
        ([], "  kept  ", "  kept  "),
        (["trim", "halfwidth", "upper"], " ９１３７０００００ａ ", "913700000A"),
    ],
)
def test_transforms(transform: list[str], raw: str, expected: str) -> None:
    assert value({"from": "a", "transform": transform}, {"a": raw}) == expected


def test_non_string_source_values_become_text() -> None:
    assert value({"from": "a"}, {"a": 370102}) == "370102"
    assert value({"from": "a"}, {"a": None}) == ""
    assert value({"from": "a"}, {}) == ""


@given(st.text())
def test_halfwidth_is_idempotent(s: str) -> None:
    once = value({"from": "a", "transform": ["halfwidth"]}, {"a": s})
    assert value({"from": "a", "transform": ["halfwidth"]}, {"a": once}) == once


@given(st.integers(min_value=0xFF01, max_value=0xFF5E))
def test_halfwidth_folds_every_fullwidth_ascii_character(cp: int) -> None:
    folded = value({"from": "a", "transform": ["halfwidth"]}, {"a": chr(cp)})
    assert folded == chr(cp - 0xFEE0) and folded.isascii()


# --- sources: from, const, concat -------------------------------------------------


def test_from_with_dotted_paths() -> None:
    payload = {"builder": {"creditCode": " 91370000163044841F ", "org": {"name": "甲"}}}
    assert value({"from": "builder.creditCode"}, payload) == "91370000163044841F"
    assert value({"from": "builder.org.name"}, payload) == "甲"
    assert value({"from": "builder.missing.name"}, payload) == ""
    assert value({"from": "builder.creditCode.x"}, payload) == ""  # through a string
    get = path_getter("a.b")
    assert get({"a": None}) is None and get({"a": {"b": 0}}) == 0


def test_const() -> None:
    assert value({"const": "001"}, {}) == "001"
    assert value({"const": "5"}, {"a": "x"}) == "5"


def test_concat_with_separator_skips_empty_parts() -> None:
    fm = {"concat": ["prov", "city", "addr.street"], "sep": "-"}
    payload = {"prov": "山东省", "city": "  ", "addr": {"street": " 经十路 "}}
    assert value(fm, payload) == "山东省-经十路"
    assert value({"concat": ["a", "b"]}, {"a": "x", "b": "y"}) == "xy"
    assert value(fm, {}) == ""


# --- regex ------------------------------------------------------------------------


def test_regex_group_one_named_value_and_no_match() -> None:
    assert value({"from": "a", "regex": r"No\.(\d+)"}, {"a": "证号 No.00123 号"}) == "00123"
    named = {"from": "a", "regex": r"(?P<pre>[A-Z]+)-(?P<value>\d+)"}
    assert value(named, {"a": "JN-42"}) == "42"
    assert value({"from": "a", "regex": r"(\d+)"}, {"a": "none"}) == ""
    assert value({"from": "a", "regex": r"(\d+)?x"}, {"a": "x"}) == ""  # group did not take part


def test_regex_then_default() -> None:
    assert value({"from": "a", "regex": r"(\d+)", "default": "0"}, {"a": "none"}) == "0"


# --- code lists -------------------------------------------------------------------


def test_codelist_translates_department_codes() -> None:
    assert value({"from": "JLZT", "codelist": "jlzt"}, {"JLZT": " 2 "}) == "revoked"
    assert value({"from": "JLZT", "codelist": "jlzt"}, {"JLZT": ""}) == ""  # empty stays empty


def test_unknown_department_code_names_target_and_source_field() -> None:
    err = error({"from": "JLZT", "codelist": "jlzt"}, {"JLZT": "9"}, target="ZZZT")
    assert (err.reason_code, err.field, err.value) == ("E_CODE_UNKNOWN", "ZZZT", "9")
    assert "JLZT='9'" in err.message_en and "'jlzt'" in err.message_en
    assert "JLZT='9'" in err.message_zh


def test_default_is_translated_by_the_codelist() -> None:
    assert value({"from": "JLZT", "codelist": "jlzt", "default": "1"}, {}) == "valid"


# --- dates and times --------------------------------------------------------------

DATES = ["%Y-%m-%d", "%Y%m%d", "%Y年%m月%d日", "%Y/%m/%d"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2023-02-03", date(2023, 2, 3)),
        ("20230203", date(2023, 2, 3)),
        ("2023年2月3日", date(2023, 2, 3)),
        ("2023年02月03日", date(2023, 2, 3)),
        ("2023/2/3", date(2023, 2, 3)),
        (" 2024-02-29 ", date(2024, 2, 29)),
        ("", None),
    ],
)
def test_date_formats(raw: str, expected: date | None) -> None:
    assert value({"from": "a", "date": DATES}, {"a": raw}) == expected


@pytest.mark.parametrize(
    "raw", ["2023-02-30", "2023-13-01", "2023-01-00", "20230230", "2023年2月29日", "2023-2", "x"]
)
def test_impossible_or_unparsable_dates(raw: str) -> None:
    err = error({"from": "FZRQ", "date": DATES}, {"FZRQ": raw}, target="ZZBFRQ")
    assert (err.reason_code, err.field, err.value) == ("E_DATE_INVALID", "ZZBFRQ", raw)
    assert "FZRQ=" in err.message_en and "%Y年%m月%d日" in err.message_en


def test_a_later_format_is_tried_when_an_earlier_one_gives_an_impossible_date() -> None:
    fm = {"from": "a", "date": ["%d/%m/%Y", "%m/%d/%Y"]}
    assert value(fm, {"a": "13/02/2023"}) == date(2023, 2, 13)
    assert value(fm, {"a": "02/13/2023"}) == date(2023, 2, 13)
    assert error(fm, {"a": "31/02/2023"}).reason_code == "E_DATE_INVALID"


def test_strptime_only_formats() -> None:
    fm = {"from": "a", "date": ["%d %b %Y"]}
    assert value(fm, {"a": "03 Feb 2023"}) == date(2023, 2, 3)
    assert error(fm, {"a": "30 Feb 2023"}).reason_code == "E_DATE_INVALID"


def test_long_term_values_mean_no_end_date() -> None:
    fm = {"from": "YYQXZ", "date": ["%Y-%m-%d"], "long_term": ["长期", "永久"]}
    assert value(fm, {"YYQXZ": "长期"}) is None
    assert value(fm, {"YYQXZ": " 永久 "}) is None
    assert value(fm, {"YYQXZ": "2030-01-01"}) == date(2030, 1, 1)
    assert error(fm, {"YYQXZ": "长期有效"}).reason_code == "E_DATE_INVALID"


@given(st.dates(min_value=date(1900, 1, 1), max_value=date(2199, 12, 31)), st.sampled_from(DATES))
def test_any_valid_date_parses_back_to_itself(d: date, fmt: str) -> None:
    assert value({"from": "a", "date": DATES}, {"a": d.strftime(fmt)}) == d


CST = timezone(timedelta(hours=8))


def test_datetime_gets_the_default_offset() -> None:
    fm = {"from": "a", "datetime": ["%Y-%m-%d %H:%M:%S", "%Y%m%d%H%M%S"]}
    assert value(fm, {"a": "2024-01-02 03:04:05"}) == datetime(2024, 1, 2, 3, 4, 5, tzinfo=CST)
    assert value(fm, {"a": "20240102030405"}) == datetime(2024, 1, 2, 3, 4, 5, tzinfo=CST)
    west = {**fm, "tz": "-05:30"}
    got = value(west, {"a": "2024-01-02 03:04:05"})
    assert got.utcoffset() == -timedelta(hours=5, minutes=30)


@pytest.mark.parametrize(
    ("raw", "offset"),
    [
        ("2024-01-02T03:04:05+0100", timedelta(hours=1)),
        ("2024-01-02T03:04:05+01:00", timedelta(hours=1)),
        ("2024-01-02T03:04:05-0330", -timedelta(hours=3, minutes=30)),
        ("2024-01-02T03:04:05Z", timedelta(0)),
    ],
)
def test_datetime_with_its_own_offset(raw: str, offset: timedelta) -> None:
    got = value({"from": "a", "datetime": ["%Y-%m-%dT%H:%M:%S%z"]}, {"a": raw})
    assert got.replace(tzinfo=None) == datetime(2024, 1, 2, 3, 4, 5)
    assert got.utcoffset() == offset


def test_datetime_fractions_and_impossible_times() -> None:
    fm = {"from": "a", "datetime": ["%Y-%m-%d %H:%M:%S.%f"]}
    assert value(fm, {"a": "2024-01-02 03:04:05.5"}).microsecond == 500000
    for raw in ("2024-01-02 25:00:00.0", "2023-02-29 01:00:00.0", "2024-01-02"):
        err = error(fm, {"a": raw}, target="SBSJ")
        assert (err.reason_code, err.field) == ("E_DATE_INVALID", "SBSJ")


@given(
    st.datetimes(min_value=datetime(1950, 1, 1), max_value=datetime(2100, 1, 1)),
    st.integers(min_value=-12 * 60, max_value=14 * 60),
)
def test_any_aware_datetime_parses_back_to_the_same_instant(naive: datetime, minutes: int) -> None:
    aware = naive.replace(microsecond=0, tzinfo=timezone(timedelta(minutes=minutes)))
    raw = aware.strftime("%Y-%m-%dT%H:%M:%S%z")
    got = value({"from": "a", "datetime": ["%Y-%m-%dT%H:%M:%S%z"]}, {"a": raw})
    assert got == aware and got.astimezone(UTC) == aware.astimezone(UTC)


# --- integer, split, default ------------------------------------------------------


def test_integer() -> None:
    fm = {"from": "a", "integer": True}
    assert value(fm, {"a": " 12 "}) == 12
    assert value(fm, {"a": 7}) == 7
    assert value(fm, {"a": ""}) is None
    assert value({"from": "a", "integer": True, "transform": ["halfwidth"]}, {"a": "２０"}) == 20


@pytest.mark.parametrize("garbage", ["12x", "1.5", "二十", "--1"])
def test_integer_garbage(garbage: str) -> None:
    err = error({"from": "CNSX", "integer": True}, {"CNSX": garbage}, target="CNBJSX")
    assert (err.reason_code, err.field, err.value) == ("E_VALUE_INVALID", "CNBJSX", garbage)
    assert "CNSX=" in err.message_en


def test_split() -> None:
    fm = {"from": "a", "split": ";"}
    assert value(fm, {"a": " id1; id2;;id3 ;"}) == ("id1", "id2", "id3")
    assert value(fm, {"a": ""}) == ()


def test_default() -> None:
    assert value({"from": "a", "default": "无"}, {"a": "   "}) == "无"
    assert value({"from": "a", "default": "无"}, {}) == "无"
    assert value({"from": "a", "default": "无"}, {"a": "有"}) == "有"
    assert value({"from": "a", "default": "2024-01-01", "date": ["%Y-%m-%d"]}, {}) == date(
        2024, 1, 1
    )


# --- lookups ----------------------------------------------------------------------

LOOKUP = {"from": "orgId", "lookup": {"table": "T_ORG", "key": "ID", "value": "MC"}}


def test_lookup_reads_the_value_stored_at_extract() -> None:
    payload = {"orgId": "O1", LOOKUPS_KEY: {"ZZBFJG": " 济南市市场监督管理局 "}}
    assert value(LOOKUP, payload, target="ZZBFJG") == "济南市市场监督管理局"
    assert value(LOOKUP, {"orgId": ""}, target="ZZBFJG") == ""  # no key, nothing to look up


def test_lookup_without_an_entry_is_an_unknown_code() -> None:
    for payload in ({"orgId": "O9"}, {"orgId": "O9", LOOKUPS_KEY: {"OTHER": "x"}}):
        err = error(LOOKUP, payload, target="ZZBFJG")
        assert (err.reason_code, err.field, err.value) == ("E_CODE_UNKNOWN", "ZZBFJG", "O9")
        assert "orgId='O9'" in err.message_en and "T_ORG" in err.message_en


def test_lookup_then_codelist() -> None:
    fm = {**LOOKUP, "codelist": "jlzt"}
    assert value(fm, {"orgId": "O1", LOOKUPS_KEY: {"ZZZT": "3"}}, target="ZZZT") == "cancelled"


class FakeLookupSource:
    def __init__(self, table: dict[str, str]) -> None:
        self.table = table
        self.calls: list[tuple[str, str, str, list[str]]] = []

    def lookup(self, table: str, key: str, value: str, keys: list[str]) -> dict[str, str]:
        self.calls.append((table, key, value, list(keys)))
        return {k: self.table[k] for k in keys if k in self.table}


def test_lookup_resolver_batches_and_caches_keys() -> None:
    spec = make_spec(ZZBFJG={**LOOKUP, "transform": ["trim", "upper"]})
    src = FakeLookupSource({"O1": "济南市市场监督管理局", "O2": "青岛市市场监督管理局"})
    resolver = LookupResolver(spec, src)
    found = resolver.resolve([{"orgId": " o1"}, {"orgId": "O2"}, {"orgId": "O9"}, {"orgId": ""}])
    assert found == [
        {"ZZBFJG": "济南市市场监督管理局"},
        {"ZZBFJG": "青岛市市场监督管理局"},
        {},
        {},
    ]
    assert src.calls == [("T_ORG", "ID", "MC", ["O1", "O2", "O9"])]
    assert resolver.resolve([{"orgId": "O1"}, {"orgId": "O9"}]) == [
        {"ZZBFJG": "济南市市场监督管理局"},
        {},
    ]
    assert len(src.calls) == 1  # cached, misses included
    resolver.resolve([{"orgId": "O3"}])
    assert src.calls[-1][3] == ["O3"]


def test_spec_without_lookups_resolves_nothing() -> None:
    assert LookupResolver(SPEC, object()).resolve([{"a": 1}, {}]) == [{}, {}]


def test_compile_mapping_and_a_lookup_miss_in_a_whole_record() -> None:
    spec = make_spec(ZZBFJG=LOOKUP)
    assert [f.target for f in compile_mapping(spec)] == list(spec.mapping)
    payload = {
        "ID": "1",
        "ZCH": "N1",
        "orgId": "O9",
        "DJJGDM": "11370800MB28559184",
        "FZRQ": "2023-01-01",
        "QYMC": "甲公司",
        "TYSHXYDM": "91370000163044841F",
        "XZQHDM": "370102",
        "JLZT": "1",
    }
    with pytest.raises(RecordRejected) as info:
        SpecNormalizer(spec).normalize(payload, "1", "v")
    assert [(e.reason_code, e.field) for e in info.value.errors] == [("E_CODE_UNKNOWN", "ZZBFJG")]
    lic = SpecNormalizer(spec).normalize({**payload, LOOKUPS_KEY: {"ZZBFJG": "甲局"}}, "1", "v")
    assert isinstance(lic, License) and lic.issuer_name == "甲局"
