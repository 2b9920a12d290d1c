"""Tests of ehub.divisions (GB/T 2260, Shandong)."""

from __future__ import annotations

import json

import pytest

import schemas
from ehub import divisions as dv
from ehub.errors import IdentifierError

SEED_CITIES = {
    "3701": "济南市",
    "3702": "青岛市",
    "3704": "枣庄市",
    "3706": "烟台市",
    "3709": "泰安市",
}


def test_province_and_sixteen_prefectures() -> None:
    prov = dv.lookup("370000")
    assert prov is not None and prov.name == "山东省" and prov.level == "province"
    assert prov.parent is None
    table = json.loads(schemas.path("codelists/divisions_37.json").read_text(encoding="utf-8"))
    prefectures = [c for c in table["codes"] if c["level"] == "prefecture"]
    assert len(prefectures) == 16
    for prefix, name in SEED_CITIES.items():
        d = dv.lookup(prefix + "00")
        assert d is not None and d.name == name and d.level == "prefecture"


def test_table_names_its_source_package() -> None:
    table = json.loads(schemas.path("codelists/divisions_37.json").read_text(encoding="utf-8"))
    assert table["source_package"] and table["source_version"]
    assert table["source_package"] in table["source"]


def test_counties() -> None:
    all_counties = dv.counties()
    assert len(all_counties) >= 130  # 136 county-level divisions in 2024
    assert all(c.level == "county" and c.parent is not None for c in all_counties)
    assert all(dv.lookup(c.parent) is not None for c in all_counties if c.parent)
    jinan = dv.counties("3701")
    assert {c.name for c in jinan} >= {"历下区", "市中区", "槐荫区", "章丘区"}
    assert [c.code for c in jinan] == sorted(c.code for c in jinan)
    assert dv.counties("11") == []


def test_lookup_and_is_known() -> None:
    d = dv.lookup("370102")
    assert d == dv.Division("370102", "历下区", "county", "370100")
    assert dv.is_known("370202")
    assert not dv.is_known("370199")
    assert not dv.is_known("110105")  # outside Shandong
    assert dv.lookup(370102) is None  # type: ignore[arg-type]


def test_check_division() -> None:
    assert dv.check_division(" 370102 ") == "370102"
    assert dv.check_division("370000") == "370000"
    assert dv.check_division("370102001") == "370102001"  # township of a known county


@pytest.mark.parametrize("bad", ["", "37010", "3701020", "37010a", "370102000", "370102700", None])
def test_check_division_format(bad: object) -> None:
    with pytest.raises(IdentifierError) as e:
        dv.check_division(bad, field="CZZTQHDM")  # type: ignore[arg-type]
    assert e.value.reason_code == "E_DIVISION_FORMAT"
    assert e.value.field == "CZZTQHDM"


@pytest.mark.parametrize("bad", ["370199", "110105", "379900001", "370100001"])
def test_check_division_unknown(bad: str) -> None:
    with pytest.raises(IdentifierError) as e:
        dv.check_division(bad)
    assert e.value.reason_code == "E_DIVISION_UNKNOWN"
    assert "山东" in e.value.message_zh


def test_county_of_and_ancestors() -> None:
    assert dv.county_of("370102001") == "370102"
    assert dv.county_of("370102") == "370102"
    assert dv.ancestors("370102001") == ["370102", "370100", "370000"]
    assert dv.ancestors("370102") == ["370100", "370000"]
    assert dv.ancestors("370100") == ["370000"]
    assert dv.ancestors("370000") == []
    with pytest.raises(IdentifierError):
        dv.county_of("3701")
    with pytest.raises(IdentifierError):
        dv.ancestors("abc")
