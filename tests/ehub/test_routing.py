"""Routing and per-office views: offices at city, county and township level over
generated licenses and cases each get exactly their jurisdiction's records, only
their fields, masked per policy; unroutable records raise; masking is irreversible."""

from __future__ import annotations

import random
import string
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ehub import divisions
from ehub.errors import ConfigError
from ehub.masking import ADDRESS_HIDDEN, mask_address, mask_id_number, mask_name, mask_phone
from ehub.offices import Office
from ehub.routing import RoutingError, division_of, in_jurisdiction, offices_for, view_for

BUSINESS = "11100000000013338W001"
PHYSICIAN = "11100000000013338W002"

# Real codes: Yantai city, two of its counties and their townships; a Jinan county.
COUNTIES = ["370602", "370611", "370102"]
DIVISIONS = [
    "370600",  # records of the city itself (city-level bureaus' holders)
    "370602", "370602001", "370602002", "370602101",
    "370611", "370611100",
    "370102", "370102003",
]  # fmt: skip
SURNAMES = "王李张刘陈杨赵黄周吴"


def _person_id(rng: random.Random, division: str) -> str:
    body = division[:6] + f"19{rng.randint(50, 99)}0{rng.randint(1, 9)}1{rng.randint(0, 9)}"
    body += f"{rng.randint(0, 999):03d}"
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return body + "10X98765432"[sum(int(c) * w for c, w in zip(body, weights, strict=True)) % 11]


def _name(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + "".join(rng.choice("伟芳娜敏静丽强磊军洋") for _ in range(2))


def _address(division: str, rng: random.Random) -> str:
    county = divisions.lookup(division[:6])
    assert county is not None and county.parent
    city = divisions.lookup(county.parent)
    assert city is not None
    return f"山东省{city.name}{county.name}幸福路{rng.randint(1, 999)}号{rng.randint(1, 9)}单元"


def make_license(i: int, division: str, rng: random.Random) -> dict[str, Any]:
    person = i % 2 == 0
    addr_div = division if division != "370600" else "370602"
    return {
        "ZZBS": f"1.2.156.3005.2.{BUSINESS}.11370600MB0000000X.{i:07d}.001.0",
        "ZZLXDM": PHYSICIAN if person else BUSINESS,
        "ZZMC": "医师执业证书" if person else "营业执照",
        "ZZBH": f"NO{i:06d}",
        "ZZBFJG": "烟台市行政审批服务局",
        "ZZBFJGDM": "11370600MB0000000X",
        "ZZBFJGQHDM": "370600",
        "ZZBFRQ": "2026-01-02",
        "ZZYXQQSRQ": "2026-01-02",
        "ZZYXQJZRQ": None,
        "CZZT": _name(rng) if person else f"烟台某某{i}科技有限公司",
        "CZZTDM": _person_id(rng, division) if person else "91370602MA3C12345X",
        "CZZTDMLXDM": "111" if person else "001",
        "CZZTDMLX": "居民身份证" if person else "统一社会信用代码",
        "CZZTQHDM": division,
        "ZZZT": "valid",
        "BBH": 1,
        "KZ": {"KZ_ZYDD": _address(addr_div, rng)} if person
        else {"KZ_FDDBR": _name(rng), "KZ_ZS": _address(addr_div, rng)},
        "GLBJBH": None,
        "lineage": {"source": "s", "source_key": str(i), "source_version": "1",
                    "content_hash": "ab" * 32},
        "QZ": [],
    }  # fmt: skip


def make_case(i: int, division: str, rng: random.Random) -> dict[str, Any]:
    person = i % 3 != 0
    return {
        "BJBH": f"CASE{i:06d}",
        "SSBM": "11370800MB28559184" + "3370117002011",
        "SXMC": "个体工商户设立登记",
        "SSJG": "某局",
        "SSJGDM": "11370800MB28559184",
        "XZQHDM": division,
        "BJLX": "1",
        "SQRLX": "0" if person else "1",
        "SQRMC": _name(rng) if person else f"某某{i}商贸有限公司",
        "SQRZJHM": _person_id(rng, division) if person else "91370602MA3C12345X",
        "SQRZJLX": "111" if person else "001",
        "SBQD": "1",
        "BJZT": "completed",
        "SBSJ": "2026-01-02T08:00:00+08:00",
        "JGZZBS": [],
        "BBH": 1,
    }


def generate(n: int = 180, seed: int = 7) -> list[tuple[str, dict[str, Any]]]:
    rng = random.Random(seed)
    out: list[tuple[str, dict[str, Any]]] = []
    for i in range(n):
        division = DIVISIONS[i % len(DIVISIONS)]
        if i % 4 == 3:
            out.append(("case", make_case(i, division, rng)))
        else:
            out.append(("license", make_license(i, division, rng)))
    return out


CITY = Office(
    "3706-yt", "烟台市行政审批服务局", "370600", "city", frozenset({"license", "case"}),
    {"license": {"*"}, "case": {"BJBH", "SXMC", "SQRMC", "SQRZJHM", "XZQHDM"}},
    include_children=True,
)  # fmt: skip
COUNTY = Office(
    "370602-zfq", "芝罘区行政审批服务局", "370602", "county", frozenset({"license"}),
    {"license": {"ZZBS", "ZZLXDM", "CZZT", "CZZTDM", "CZZTQHDM", "KZ_ZS", "KZ_ZYDD"}},
    license_types=frozenset({BUSINESS, PHYSICIAN}),
    include_children=True,
    masking={"KZ_ZS": "address", "KZ_ZYDD": "address", "CZZT": "none"},
)  # fmt: skip
TOWNSHIP = Office(
    "370602001-xnjd", "向阳街道办事处", "370602001", "township",
    frozenset({"license", "case"}), {"license": {"ZZBS", "CZZT", "KZ"}, "case": {"*"}},
    license_types=frozenset({BUSINESS}),
)  # fmt: skip
# A county office without its townships, and a revoked one.
FUSHAN = Office("370611-fsq", "福山区", "370611", "county", frozenset({"case"}),
                {"case": {"BJBH"}})  # fmt: skip
REVOKED = Office("370102-lxq", "历下区", "370102", "county", frozenset({"license", "case"}),
                 {"license": {"*"}, "case": {"*"}}, include_children=True,
                 revoked_at=datetime(2026, 1, 1, tzinfo=UTC))  # fmt: skip
OFFICES = [CITY, COUNTY, TOWNSHIP, FUSHAN, REVOKED]


def expected(office: Office, kind: str, doc: dict[str, Any]) -> bool:
    """The jurisdiction rule restated independently, by string prefixes."""
    division = doc["CZZTQHDM"] if kind == "license" else doc["XZQHDM"]
    if not office.active or kind not in office.kinds:
        return False
    if kind == "license" and office.license_types and doc["ZZLXDM"] not in office.license_types:
        return False
    if office.code == "3706-yt":
        return division.startswith("3706")
    if office.code == "370602-zfq":
        return division.startswith("370602")
    return division == office.division


def test_each_office_gets_exactly_its_jurisdiction() -> None:
    records = generate()
    received: dict[str, list[str]] = {o.code: [] for o in OFFICES}
    for kind, doc in records:
        division = division_of(kind, doc)  # type: ignore[arg-type]
        type_code = doc.get("ZZLXDM")
        got = offices_for(division, kind, type_code, OFFICES)  # type: ignore[arg-type]
        for o in got:
            received[o.code].append(doc.get("ZZBS") or doc["BJBH"])
        assert {o.code for o in got} == {o.code for o in OFFICES if expected(o, kind, doc)}
    ids = {o.code: {d.get("ZZBS") or d["BJBH"] for k, d in records if expected(o, k, d)}
           for o in OFFICES}  # fmt: skip
    for o in OFFICES:
        assert sorted(received[o.code]) == sorted(ids[o.code]), o.code
    # Non-trivial: every live office gets something, the city more than its county,
    # the county more than its township, nobody anything from Jinan.
    assert (
        len(received["3706-yt"]) > len(received["370602-zfq"]) > len(received["370602001-xnjd"]) > 0
    )
    assert received["370611-fsq"] and received["370102-lxq"] == []
    assert all(
        k == "case" for k, d in records if (d.get("ZZBS") or d["BJBH"]) in received["370611-fsq"]
    )


def test_jurisdiction_rule() -> None:
    assert in_jurisdiction(CITY, "370600") and in_jurisdiction(CITY, "370611100")
    assert not in_jurisdiction(CITY, "370102")
    assert in_jurisdiction(COUNTY, "370602101") and not in_jurisdiction(COUNTY, "370600")
    assert in_jurisdiction(TOWNSHIP, "370602001")
    assert not in_jurisdiction(TOWNSHIP, "370602") and not in_jurisdiction(TOWNSHIP, "370602002")
    assert in_jurisdiction(FUSHAN, "370611") and not in_jurisdiction(FUSHAN, "370611100")


def _scope_ok(office: Office, kind: str, view: dict[str, Any]) -> None:
    scope = office.fields[kind]  # type: ignore[index]
    if "*" in scope:
        return
    for key in view:
        if key == "KZ":
            assert "KZ" in scope or all(k in scope for k in view["KZ"])
        else:
            assert key in scope, (office.code, key)


def test_views_hold_only_scoped_fields_masked_per_policy() -> None:
    seen = 0
    for kind, doc in generate():
        division = division_of(kind, doc)  # type: ignore[arg-type]
        for o in offices_for(division, kind, doc.get("ZZLXDM"), OFFICES):  # type: ignore[arg-type]
            view = view_for(o, kind, doc)  # type: ignore[arg-type]
            seen += 1
            _scope_ok(o, kind, view)
            if kind == "license":
                person = doc["CZZTDMLXDM"] == "111"
                kz = view.get("KZ", {})
                if o is CITY:  # every field, the hub's default masking
                    assert set(view) == set(doc)
                    assert "content_hash" not in view["lineage"]
                    assert view["CZZT"] == (mask_name(doc["CZZT"]) if person else doc["CZZT"])
                    assert view["CZZTDM"] == (
                        mask_id_number(doc["CZZTDM"]) if person else doc["CZZTDM"]
                    )
                    if not person:
                        assert kz["KZ_FDDBR"] == mask_name(doc["KZ"]["KZ_FDDBR"])
                        assert kz["KZ_ZS"] == doc["KZ"]["KZ_ZS"]
                if o is COUNTY:  # names in clear, ID masked, addresses masked
                    assert view["CZZT"] == doc["CZZT"]
                    assert set(view) <= {"ZZBS", "ZZLXDM", "CZZT", "CZZTDM", "CZZTQHDM", "KZ"}
                    addr = doc["KZ"].get("KZ_ZS") or doc["KZ"]["KZ_ZYDD"]
                    masked = next(iter(kz.values()))
                    assert masked.endswith("区" + ADDRESS_HIDDEN) and "幸福路" not in masked
                    assert addr.startswith(masked[: -len(ADDRESS_HIDDEN)])
                    assert "KZ_FDDBR" not in kz and "ZZMC" not in view
                if o is TOWNSHIP:
                    assert set(view) == {"ZZBS", "CZZT", "KZ"}
                    assert view["KZ"]["KZ_FDDBR"] == mask_name(doc["KZ"]["KZ_FDDBR"])
                if person:
                    assert doc["CZZTDM"][6:14] not in str(view)
            else:
                person = doc["SQRLX"] == "0"
                if person and "SQRZJHM" in view:
                    assert view["SQRZJHM"] == mask_id_number(doc["SQRZJHM"])
                    assert view["SQRMC"] == mask_name(doc["SQRMC"])
                    assert doc["SQRZJHM"][6:14] not in str(view)
                elif "SQRZJHM" in view:  # a company's USCC and name are public
                    assert view["SQRZJHM"] == doc["SQRZJHM"]
                    assert view["SQRMC"] == doc["SQRMC"]
                if o is FUSHAN:
                    assert set(view) == {"BJBH"}
                if o is TOWNSHIP:
                    assert set(view) == set(doc)
    assert seen > 100


def test_view_does_not_modify_input_and_refuses_other_kinds() -> None:
    doc = make_license(0, "370602001", random.Random(1))
    before = repr(doc)
    view_for(CITY, "license", doc)
    assert repr(doc) == before
    with pytest.raises(ConfigError, match="not authorized for case"):
        view_for(COUNTY, "case", make_case(1, "370602", random.Random(1)))


def test_license_division_rule_and_unroutable_records() -> None:
    rng = random.Random(3)
    lic = make_license(2, "370602001", rng)
    assert division_of("license", lic) == "370602001"
    lic["CZZTQHDM"] = ""
    assert division_of("license", lic) == "370600"  # falls back to the issuer's
    lic["ZZBFJGQHDM"] = None
    with pytest.raises(RoutingError) as exc:
        division_of("license", lic)
    assert exc.value.reason_code == "E_REQUIRED_MISSING" and exc.value.field == "CZZTQHDM"
    assert lic["ZZBS"] in str(exc.value) and exc.value.record_key == lic["ZZBS"]
    # A present but unknown holder division never falls back to the issuer's.
    lic.update(CZZTQHDM="379999", ZZBFJGQHDM="370600")
    with pytest.raises(RoutingError) as exc:
        division_of("license", lic)
    assert exc.value.reason_code == "E_DIVISION_UNKNOWN" and exc.value.field == "CZZTQHDM"
    case = make_case(3, "370602", rng)
    case["XZQHDM"] = "12345"
    with pytest.raises(RoutingError) as exc:
        division_of("case", case)
    assert exc.value.reason_code == "E_DIVISION_FORMAT" and exc.value.field == "XZQHDM"
    assert "CASE000003" in str(exc.value)
    with pytest.raises(RoutingError):
        offices_for("379999", "license", BUSINESS, OFFICES)
    with pytest.raises(ConfigError, match="unknown record kind"):
        division_of("permit", lic)  # type: ignore[arg-type]


# --- masking properties ---------------------------------------------------------

_hidden_chars = st.characters(blacklist_characters="*", blacklist_categories=("Cs", "Z", "Cc"))
_names = st.text(_hidden_chars, min_size=2, max_size=12)


@given(_names, _names)
def test_mask_name_keeps_first_char_and_hides_the_rest(a: str, b: str) -> None:
    out = mask_name(a)
    assert out[0] == a[0] and out[1:] == "*" * (len(a) - 1)
    # Irreversible: names differing only after the first character look the same.
    if len(a) == len(b):
        assert mask_name(a[0] + b[1:]) == out


@given(st.from_regex(r"\A[0-9]{17}[0-9X]\Z"), st.from_regex(r"\A[0-9]{8}\Z"))
def test_mask_id_number_keeps_region_and_last_four(v: str, other: str) -> None:
    out = mask_id_number(v)
    assert out[:6] == v[:6] and out[-4:] == v[-4:] and out[6:14] == "*" * 8
    assert mask_id_number(v[:6] + other + v[14:]) == out


@given(st.from_regex(r"\A1[0-9]{10}\Z"), st.from_regex(r"\A[0-9]{4}\Z"))
def test_mask_phone_keeps_three_and_four(v: str, other: str) -> None:
    out = mask_phone(v)
    assert out == v[:3] + "****" + v[-4:]
    assert mask_phone(v[:3] + other + v[7:]) == out


@given(st.text(_hidden_chars, max_size=30))
def test_masks_of_any_text_only_keep_characters_in_place(v: str) -> None:
    s = v.strip()
    for fn, most in ((mask_name, 1), (mask_id_number, 10), (mask_phone, 10)):
        out = fn(v)
        assert len(out) == len(s)
        kept = [i for i, c in enumerate(out) if c != "*"]
        assert all(out[i] == s[i] for i in kept) and len(kept) <= most


_street = st.text(alphabet=string.ascii_letters + string.digits + "路街号楼单元室", min_size=1,
                  max_size=20)  # fmt: skip


@given(st.sampled_from(divisions.counties("37")), st.booleans(), _street)
def test_mask_address_keeps_the_district_and_hides_the_street(
    county: divisions.Division, with_province: bool, street: str
) -> None:
    city = divisions.lookup(county.parent or "")
    assert city is not None
    head = ("山东省" if with_province else "") + city.name + county.name
    out = mask_address(head + street)
    assert out == head + ADDRESS_HIDDEN
    assert street not in out


@given(st.text(max_size=40))
def test_mask_address_output_is_a_prefix_plus_the_marker(v: str) -> None:
    out = mask_address(v)
    s = v.strip()
    assert out == s or (out.endswith(ADDRESS_HIDDEN) and s.startswith(out[: -len(ADDRESS_HIDDEN)]))
    assert len(out) - len(ADDRESS_HIDDEN) < len(s) or out == s
