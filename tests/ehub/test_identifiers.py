"""Tests of ehub.identifiers against real vectors and check-character properties."""

from __future__ import annotations

import base64
import hashlib
import string
from datetime import date, timedelta

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ehub import identifiers as ids
from ehub.errors import IdentifierError

# Real identifiers quoted in STANDARDS.md §1.
REAL_LICENSE_IDS = [
    "1.2.156.3005.2.11100000000013338W011.11430000006122244L.20230000403.001.U",
    "1.2.156.3005.2.11100000000013338W009.11330105002500287C.2025052201.002.0",
    "1.2.156.3005.2.11100000000013338W032.11220000013544541J.2430599.001.F",
]
REAL_USCCS = [
    "11100000000013338W",
    "11430000006122244L",
    "11330105002500287C",
    "11220000013544541J",
    "91370000163044841F",
    "11370800MB28559184",
]
USCC_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
ALNUM = string.digits + string.ascii_uppercase


def reason(exc_info: pytest.ExceptionInfo[IdentifierError]) -> str:
    return exc_info.value.reason_code


# --- license identifier --------------------------------------------------------


@pytest.mark.parametrize("ident", REAL_LICENSE_IDS)
def test_real_license_identifiers_verify_and_regenerate(ident: str) -> None:
    parsed = ids.parse_license_identifier(ident)
    assert str(parsed) == ident
    assert ids.is_valid_license_identifier(ident)
    rebuilt = ids.make_license_identifier(
        parsed.type_code, parsed.issuer_code, parsed.serial, parsed.version
    )
    assert rebuilt == ident


def test_license_identifier_parts() -> None:
    p = ids.parse_license_identifier(REAL_LICENSE_IDS[1])
    assert (p.type_code, p.issuer_code, p.serial, p.version, p.check) == (
        "11100000000013338W009",
        "11330105002500287C",
        "2025052201",
        "002",
        "0",
    )


def test_license_identifier_wrong_check_is_reported() -> None:
    bad = REAL_LICENSE_IDS[0][:-1] + "V"
    with pytest.raises(IdentifierError) as e:
        ids.parse_license_identifier(bad)
    assert reason(e) == "E_LICENSE_ID_CHECK"
    assert e.value.field == "ZZBS"
    assert "校验位" in e.value.message_zh
    assert not ids.is_valid_license_identifier(bad)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "1.2.156.3005.1.11100000000013338W011.11430000006122244L.20230000403.001.U",
        "1.2.156.3005.2.11100000000013338W11.11430000006122244L.20230000403.001.U",
        "1.2.156.3005.2.11100000000013338W011.11430000006122244L.20230000403.01.U",
        "1.2.156.3005.2.11100000000013338W011.11430000006122244L..001.U",
        "1.2.156.3005.2.11100000000013338W011.11430000006122244L.2023-0403.001.U",
        "1.2.156.3005.2.11100000000013338W011.11430000006122244L.20230000403.001",
    ],
)
def test_license_identifier_format_errors(bad: str) -> None:
    with pytest.raises(IdentifierError) as e:
        ids.parse_license_identifier(bad)
    assert reason(e) == "E_LICENSE_ID_FORMAT"


def test_license_identifier_lower_case_is_normalized() -> None:
    low = REAL_LICENSE_IDS[0].lower()
    assert str(ids.parse_license_identifier(low)) == REAL_LICENSE_IDS[0]


def test_make_license_identifier_rejects_bad_parts() -> None:
    with pytest.raises(IdentifierError) as e:
        ids.make_license_identifier("11100000000013338W011", "11430000006122244L", "ab-c")
    assert reason(e) == "E_LICENSE_ID_FORMAT"
    assert e.value.field == "serial"


def test_mod37_36_rejects_characters_outside_alphabet() -> None:
    with pytest.raises(ValueError):
        ids.mod37_36_check_char("AB-C")


bodies = st.text(alphabet=ALNUM, min_size=1, max_size=80)


@given(bodies)
def test_mod37_36_computed_check_always_satisfies_the_defining_equation(body: str) -> None:
    # Independent restatement of ISO/IEC 7064 hybrid: run the check character
    # through the same recurrence; the final S must be 1... i.e. (P + c) mod 36 == 1.
    p = 36
    for ch in body:
        p = (2 * ((p + ALNUM.index(ch)) % 36 or 36)) % 37
    c = ALNUM.index(ids.mod37_36_check_char(body))
    assert (p + c) % 36 == 1


license_parts = st.tuples(
    st.text(alphabet=ALNUM, min_size=21, max_size=21),
    st.text(alphabet=ALNUM, min_size=18, max_size=18),
    st.text(alphabet=ALNUM, min_size=1, max_size=32),
    st.from_regex(r"[0-9]{3}", fullmatch=True),
)


@given(license_parts)
def test_generated_license_identifiers_validate(parts: tuple[str, str, str, str]) -> None:
    ident = ids.make_license_identifier(*parts)
    assert ids.is_valid_license_identifier(ident)


@given(license_parts, st.data())
def test_mod37_36_detects_every_single_substitution(
    parts: tuple[str, str, str, str], data: st.DataObject
) -> None:
    body = "".join(parts)
    full = body + ids.mod37_36_check_char(body)
    i = data.draw(st.integers(0, len(full) - 1))
    new = data.draw(st.sampled_from(ALNUM).filter(lambda c: c != full[i]))
    changed = full[:i] + new + full[i + 1 :]
    assert ids.mod37_36_check_char(changed[:-1]) != changed[-1]


@given(st.text(alphabet=ALNUM, min_size=2, max_size=60), st.data())
def test_mod37_36_detects_transpositions_of_non_neighbour_values(
    body: str, data: st.DataObject
) -> None:
    # Guaranteed: swapping two adjacent characters whose values do not differ
    # by 1 (mod 36) is always detected. Neighbour values escape in rare states.
    full = body + ids.mod37_36_check_char(body)
    i = data.draw(st.integers(0, len(full) - 2))
    a, b = ALNUM.index(full[i]), ALNUM.index(full[i + 1])
    assume((a - b) % 36 not in (0, 1, 35))
    swapped = full[:i] + full[i + 1] + full[i] + full[i + 2 :]
    assert ids.mod37_36_check_char(swapped[:-1]) != swapped[-1]


def test_mod37_36_transposition_blind_spot_is_as_documented() -> None:
    # P starts at 36; values 18 and 19 ("I", "J") swapped first collide.
    assert ids.mod37_36_check_char("IJ") == ids.mod37_36_check_char("JI")
    assert ids.mod37_36_check_char("IK") != ids.mod37_36_check_char("KI")


def test_serial_from_key_is_deterministic_and_well_formed() -> None:
    s1 = ids.serial_from_key("dept-amr/row/42")
    assert s1 == ids.serial_from_key("dept-amr/row/42")
    assert len(s1) == 20 and s1.isalnum() and s1.upper() == s1
    assert s1 != ids.serial_from_key("dept-amr/row/43")
    assert len(ids.serial_from_key("x", 32)) == 32
    assert ids.serial_from_key("x", 7) == ids.serial_from_key("x", 32)[:7]
    with pytest.raises(ValueError):
        ids.serial_from_key("x", 33)
    ident = ids.make_license_identifier("11100000000013338W011", "11430000006122244L", s1)
    assert ids.is_valid_license_identifier(ident)


@settings(max_examples=300)
@given(st.text(max_size=40), st.integers(1, 32))
def test_serial_from_key_is_the_base32_of_the_domain_separated_sha256(key: str, n: int) -> None:
    # The documented definition, written with the standard library's encoder.
    digest = hashlib.sha256(b"ehub-license-serial\x00" + key.encode("utf-8", "surrogatepass"))
    expected = base64.b32encode(digest.digest()).decode("ascii")[:n]
    try:
        got = ids.serial_from_key(key, n)
    except UnicodeEncodeError:  # a lone surrogate is not a key a source can send
        return
    assert got == expected


# --- USCC ----------------------------------------------------------------------


@pytest.mark.parametrize("code", REAL_USCCS)
def test_real_usccs_are_valid(code: str) -> None:
    assert ids.uscc_check_char(code[:17]) == code[17]
    assert ids.check_uscc(code) == code
    assert ids.is_valid_org_code(code[8:17])


def test_uscc_normalization() -> None:
    assert ids.check_uscc(" 11370800mb28559184 ") == "11370800MB28559184"
    full_width = "１１３７０８００ＭＢ２８５５９１８４"
    assert ids.check_uscc(full_width) == "11370800MB28559184"


@pytest.mark.parametrize(
    "bad", ["", "1137080MB28559184", "11370800MB285591840", "11370800OB28559184", 123]
)
def test_uscc_format_errors(bad: object) -> None:
    with pytest.raises(IdentifierError) as e:
        ids.check_uscc(bad, field="ZZBFJGDM")  # type: ignore[arg-type]
    assert reason(e) == "E_USCC_FORMAT"
    assert e.value.field == "ZZBFJGDM"


def test_uscc_check_error() -> None:
    with pytest.raises(IdentifierError) as e:
        ids.check_uscc("91370000163044841E")
    assert reason(e) == "E_USCC_CHECK"
    assert "expected F" in e.value.message_en


def test_uscc_with_bad_embedded_org_code() -> None:
    body = "91370000" + "16304484" + "2"  # org check should be 1
    code = body + ids.uscc_check_char(body)
    with pytest.raises(IdentifierError) as e:
        ids.check_uscc(code)
    assert reason(e) == "E_ORG_CODE_CHECK"
    assert not ids.is_valid_uscc(code)
    assert ids.is_valid_uscc(code, check_org_code=False)


uscc_bodies = st.text(alphabet=USCC_CHARSET, min_size=17, max_size=17)


@given(uscc_bodies, st.data())
def test_uscc_check_detects_substitutions_and_adjacent_transpositions(
    body: str, data: st.DataObject
) -> None:
    full = body + ids.uscc_check_char(body)
    assert ids.is_valid_uscc(full, check_org_code=False)
    i = data.draw(st.integers(0, 17))
    new = data.draw(st.sampled_from(USCC_CHARSET).filter(lambda c: c != full[i]))
    assert not ids.is_valid_uscc(full[:i] + new + full[i + 1 :], check_org_code=False)
    j = data.draw(st.integers(0, 16))
    assume(full[j] != full[j + 1])
    swapped = full[:j] + full[j + 1] + full[j] + full[j + 2 :]
    assert not ids.is_valid_uscc(swapped, check_org_code=False)


# --- organization code -------------------------------------------------------


def test_org_code() -> None:
    assert ids.org_code_check_char("16304484") == "1"
    assert ids.is_valid_org_code("16304484-1")
    assert not ids.is_valid_org_code("16304484-2")
    assert not ids.is_valid_org_code("1630448")
    # 11 - (sum mod 11) == 11 maps to "0", == 10 maps to "X".
    assert ids.org_code_check_char("00000000") == "0"
    assert ids.org_code_check_char("00000006") == "X"  # 6*2 = 12 ≡ 1 (mod 11)


# --- citizen ID ----------------------------------------------------------------


def test_gb11643_published_example() -> None:
    assert ids.citizen_id_check_char("11010519491231002") == "X"
    assert ids.check_citizen_id("11010519491231002x") == "11010519491231002X"
    assert ids.is_valid_citizen_id("11010519491231002X", as_of=date(2024, 1, 1))


def test_citizen_id_region_is_not_looked_up() -> None:
    first17 = "99000019800101001"  # no such region; still a valid number by GB 11643
    assert ids.is_valid_citizen_id(first17 + ids.citizen_id_check_char(first17))


@pytest.mark.parametrize(
    ("first17", "code"),
    [
        ("37010219900230123", "E_CITIZEN_ID_DATE"),  # 30 February
        ("37010219001301123", "E_CITIZEN_ID_DATE"),  # month 13
        ("37010218000101123", "E_CITIZEN_ID_DATE"),  # implausibly old
    ],
)
def test_citizen_id_bad_dates(first17: str, code: str) -> None:
    with pytest.raises(IdentifierError) as e:
        ids.check_citizen_id(first17 + ids.citizen_id_check_char(first17))
    assert reason(e) == code


def test_citizen_id_leap_day_and_future_date() -> None:
    leap = "37010220000229123"
    number = leap + ids.citizen_id_check_char(leap)
    assert ids.is_valid_citizen_id(number, as_of=date(2000, 2, 29))
    with pytest.raises(IdentifierError) as e:
        ids.check_citizen_id(number, as_of=date(2000, 2, 28))
    assert reason(e) == "E_CITIZEN_ID_DATE"


@pytest.mark.parametrize(
    "bad",
    ["", "11010519491231002", "110105194912310021X", "01010519491231002X", "1101051949123100XX"],
)
def test_citizen_id_format_errors(bad: str) -> None:
    with pytest.raises(IdentifierError) as e:
        ids.check_citizen_id(bad, field="CZZTDM")
    assert reason(e) == "E_CITIZEN_ID_FORMAT"


def test_citizen_id_check_error_does_not_echo_expected_check() -> None:
    with pytest.raises(IdentifierError) as e:
        ids.check_citizen_id("110105194912310021")
    assert reason(e) == "E_CITIZEN_ID_CHECK"
    assert "110105" not in str(e.value)


@given(
    st.from_regex(r"[1-9][0-9]{5}", fullmatch=True),
    st.dates(min_value=date(1900, 1, 1), max_value=date(2024, 12, 31)),
    st.from_regex(r"[0-9]{3}", fullmatch=True),
    st.data(),
)
def test_citizen_id_properties(region: str, born: date, seq: str, data: st.DataObject) -> None:
    first17 = region + born.strftime("%Y%m%d") + seq
    number = first17 + ids.citizen_id_check_char(first17)
    assert ids.is_valid_citizen_id(number, as_of=born)
    assert not ids.is_valid_citizen_id(number, as_of=born - timedelta(days=1))
    # MOD 11-2 detects every single substitution (of the check, too).
    i = data.draw(st.integers(0, 17))
    alphabet = "0123456789X" if i == 17 else "0123456789"
    new = data.draw(st.sampled_from(alphabet).filter(lambda c: c != number[i]))
    changed = number[:i] + new + number[i + 1 :]
    try:
        ids.check_citizen_id(changed)
    except IdentifierError as exc:
        assert exc.reason_code in {"E_CITIZEN_ID_CHECK", "E_CITIZEN_ID_DATE", "E_CITIZEN_ID_FORMAT"}
    else:
        pytest.fail(f"substitution at {i} not detected")
    assert ids.citizen_id_check_char(changed[:17]) != changed[17] or changed[:17] == first17


@given(key=st.text(min_size=1, max_size=40))
@settings(max_examples=80, deadline=None)
def test_assembled_identifier_equals_the_checked_one(key: str) -> None:
    serial = ids.serial_from_key(key)
    for issuer in ("11430000006122244L", "11330105002500287C"):
        made = ids.make_license_identifier("11100000000013338W011", issuer, serial)
        assert ids.assemble_license_identifier("11100000000013338W011", issuer, serial) == made
        assert ids.is_valid_license_identifier(made)
