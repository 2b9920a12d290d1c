"""Tests of ehub.codelists and the shipped code list files."""

from __future__ import annotations

import json

import pytest

import schemas
from ehub import codelists
from ehub.errors import ConfigError, RecordError

REQUIRED_REASONS = {
    "E_REQUIRED_MISSING",
    "E_USCC_FORMAT",
    "E_USCC_CHECK",
    "E_CITIZEN_ID_FORMAT",
    "E_CITIZEN_ID_DATE",
    "E_CITIZEN_ID_CHECK",
    "E_ORG_CODE_CHECK",
    "E_LICENSE_ID_FORMAT",
    "E_LICENSE_ID_CHECK",
    "E_DIVISION_FORMAT",
    "E_DIVISION_UNKNOWN",
    "E_DATE_INVALID",
    "E_VALIDITY_WINDOW",
    "E_CODE_UNKNOWN",
    "E_FIELD_TOO_LONG",
}


@pytest.mark.parametrize("name", codelists.NAMES)
def test_every_shipped_list_loads(name: str) -> None:
    cl = codelists.load(name)
    assert cl.name == name and len(cl) > 0
    assert cl.source
    for e in cl:
        assert e.code in cl and cl.zh(e.code) == e.zh and cl.en(e.code)


def test_every_file_in_codelists_is_named() -> None:
    files = {p.stem for p in schemas.path("codelists/reason_codes.json").parent.glob("*.json")}
    assert files == set(codelists.NAMES)


def test_load_is_cached() -> None:
    assert codelists.load("channels") is codelists.load("channels")


def test_membership_and_names() -> None:
    hct = codelists.load("holder_code_types")
    assert "001" in hct and "111" in hct and "222" not in hct and 1 not in hct
    assert hct.zh("001") == "统一社会信用代码"
    assert hct.zh("111") == "居民身份证"
    assert hct.codes[0] == "001"
    with pytest.raises(RecordError) as e:
        hct.check("222", field="CZZTDMLXDM")
    assert e.value.reason_code == "E_CODE_UNKNOWN" and e.value.field == "CZZTDMLXDM"
    assert hct.get("222") is None


def test_channels_and_case_lists() -> None:
    assert set(codelists.load("channels").codes) == {"pc", "window", "mobile", "kiosk"}
    assert codelists.load("case_types").zh("2") == "承诺件"
    assert set(codelists.load("case_states").codes) == {
        "submitted",
        "accepted",
        "not_accepted",
        "decided",
        "completed",
        "withdrawn",
    }
    assert codelists.load("case_states").unconfirmed


def test_reason_codes_cover_the_hub() -> None:
    rc = codelists.load("reason_codes")
    assert set(rc.codes) >= REQUIRED_REASONS
    for code in rc.codes:
        en, zh = codelists.reason_message(code)
        assert en and zh and en != zh


def test_every_reason_code_tells_the_department_what_to_fix() -> None:
    rc = codelists.load("reason_codes")
    for e in rc:
        fix_en, fix_zh = codelists.reason_fix(e.code)
        assert fix_zh.strip() and fix_en.strip(), e.code
        assert isinstance(e.extra["fix_zh"], str) and isinstance(e.extra["fix_en"], str)
        assert fix_zh != e.zh and fix_en != e.en, f"{e.code}: the fix repeats the message"
    assert "GB 32100" in codelists.reason_fix("E_USCC_CHECK")[1]
    with pytest.raises(RecordError):
        codelists.reason_fix("E_NO_SUCH_REASON")


def test_business_license_type_is_a_marked_default() -> None:
    lt = codelists.load("license_types")
    default = lt.meta["default_business_license"]
    assert lt.zh(default) == "营业执照"
    assert len(default) == 21 and default[18:].isdigit()
    assert lt.get(default).extra["configurable_default"] is True  # type: ignore[union-attr]
    assert lt.unconfirmed


@pytest.mark.parametrize("name", ["../license.schema", "Nope", "", "no_such_list"])
def test_bad_names_are_config_errors(name: str) -> None:
    with pytest.raises(ConfigError):
        codelists.load(name)


@pytest.mark.parametrize(
    "doc",
    [
        [],
        {"name": "x", "unconfirmed": True, "source": "s", "codes": []},
        {"name": "x", "unconfirmed": "yes", "source": "s", "codes": [{"code": "a", "zh": "甲"}]},
        {"name": "x", "unconfirmed": True, "source": "s", "codes": [{"code": "a"}]},
        {
            "name": "x",
            "unconfirmed": True,
            "source": "s",
            "codes": [{"code": "a", "zh": "甲"}, {"code": "a", "zh": "乙"}],
        },
    ],
)
def test_malformed_lists_are_rejected(doc: object) -> None:
    with pytest.raises(ConfigError):
        codelists._parse("x", json.loads(json.dumps(doc)))
