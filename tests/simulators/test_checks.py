"""The simulators' own identifier checks against published vectors."""

from __future__ import annotations

from datetime import date

import pytest

from simulators.checks import (
    citizen_id_is_valid,
    license_identifier_problem,
    make_uscc,
    org_code_check,
    parse_legacy_date,
    registration_number,
    uscc_is_valid,
)

REAL_IDENTIFIERS = [
    "1.2.156.3005.2.11100000000013338W011.11430000006122244L.20230000403.001.U",
    "1.2.156.3005.2.11100000000013338W009.11330105002500287C.2025052201.002.0",
    "1.2.156.3005.2.11100000000013338W032.11220000013544541J.2430599.001.F",
]


@pytest.mark.parametrize("ident", REAL_IDENTIFIERS)
def test_real_identifiers_pass_and_every_other_check_char_fails(ident: str) -> None:
    assert license_identifier_problem(ident) is None
    for other in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ":
        if other != ident[-1]:
            assert license_identifier_problem(ident[:-1] + other) is not None


def test_identifier_structure_problems_are_named() -> None:
    ident = REAL_IDENTIFIERS[0]
    assert "must start" in (license_identifier_problem("9" + ident[1:]) or "")
    assert "5 segments" in (license_identifier_problem(ident.rsplit(".", 1)[0]) or "")
    assert "version" in (license_identifier_problem(ident.replace(".001.", ".1.")) or "")


@pytest.mark.parametrize(
    "code", ["11430000006122244L", "11330105002500287C", "11220000013544541J", "91350100M000100Y43"]
)
def test_real_usccs_are_valid_and_a_changed_check_char_is_not(code: str) -> None:
    assert uscc_is_valid(code)
    assert not uscc_is_valid(code[:17] + ("0" if code[17] != "0" else "1"))


def test_uscc_rejects_bad_shape() -> None:
    assert not uscc_is_valid("")
    assert not uscc_is_valid(None)
    assert not uscc_is_valid("91370602MA3C1234I3")  # I is not in the charset
    assert not uscc_is_valid("9137060")


def test_org_code_check_vectors() -> None:
    # D2143569-? : 13*3+2*7+1*9+4*10+3*5+5*8+6*4+9*2 = 199; 11 - 199 % 11 = 10 -> X
    assert org_code_check("D2143569") == "X"
    assert make_uscc("91", "370602", "D2143569")[8:17] == "D2143569X"


def test_citizen_id() -> None:
    assert citizen_id_is_valid("11010519491231002X")
    assert not citizen_id_is_valid("110105194912310021")
    assert not citizen_id_is_valid("110105194902300028")  # 30 February


def test_registration_number_mod_11_10() -> None:
    number = registration_number("370602", 123)
    assert len(number) == 15 and number.startswith("37060200000123")
    # ISO 7064 MOD 11,10 verification form: the running sum at the check digit is 1 (mod 10)
    p = 10
    for ch in number[:-1]:
        p = (2 * ((p + int(ch)) % 10 or 10)) % 11
    assert (p + int(number[-1])) % 10 == 1
    assert all((p + d) % 10 != 1 for d in range(10) if d != int(number[-1]))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2023-02-28", date(2023, 2, 28)),
        ("20240229", date(2024, 2, 29)),
        ("2023-02-30", None),
        ("20230229", None),
        ("2023-13-01", None),
        ("2023/01/01", None),
        ("长期", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_legacy_date(text: str | None, expected: date | None) -> None:
    assert parse_legacy_date(text) == expected
