"""Normalization of market-regulation rows: canonical licenses and reasons for rejects."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from ehub.identifiers import is_valid_license_identifier, org_code_check_char, uscc_check_char
from ehub.normalize import RecordRejected
from ehub.normalize.business_license import normalize
from ehub.records import LicenseStatus, license_content_hash


def _uscc(prefix8: str, org8: str) -> str:
    body17 = prefix8 + org8 + org_code_check_char(org8)
    return body17 + uscc_check_char(body17)


HOLDER = _uscc("91370602", "MA3C1234")
ISSUER = _uscc("11370602", "MB285059")


def row(**changes: Any) -> dict[str, Any]:
    base = {
        "ID": 7,
        "TYSHXYDM": HOLDER,
        "QYMC": "烟台海岸科技有限公司",
        "ZZBH": HOLDER,
        "FDDBR": "王小明",
        "QYLX": "有限责任公司",
        "ZCZB": "100万元人民币",
        "ZS": "山东省烟台市芝罘区海港路1号",
        "JYFW": "软件开发",
        "CLRQ": "20200115",
        "YYQXZ": "长期",
        "DJJG": "烟台市芝罘区市场监督管理局",
        "DJJGDM": ISSUER,
        "XZQHDM": "370602",
        "FZRQ": "2024-05-20",
        "JLZT": "1",
        "GXSJ": "2024-05-20 09:30:00",
    }
    base.update(changes)
    return base


def test_valid_row_becomes_a_canonical_license() -> None:
    lic = normalize(row(), source="mr", source_key="7", source_version="v")
    assert is_valid_license_identifier(lic.identifier)
    assert lic.issuer_code == ISSUER and lic.holder_code == HOLDER and lic.holder_code_type == "001"
    assert lic.valid_from == date(2020, 1, 15) and lic.valid_until is None
    assert lic.status is LicenseStatus.VALID
    assert lic.surface["KZ_FDDBR"] == "王小明"
    assert lic.lineage.content_hash == license_content_hash(lic)


def test_identifier_and_hash_are_stable_and_change_with_content() -> None:
    a = normalize(row(), source="mr", source_key="7", source_version="v1")
    b = normalize(row(), source="mr", source_key="7", source_version="v2")
    c = normalize(row(ZS="新地址"), source="mr", source_key="7", source_version="v3")
    assert a.identifier == b.identifier == c.identifier
    assert a.lineage.content_hash == b.lineage.content_hash != c.lineage.content_hash


@pytest.mark.parametrize(
    ("changes", "reason", "field"),
    [
        ({"TYSHXYDM": HOLDER[:-1] + ("0" if HOLDER[-1] != "0" else "1")}, "E_USCC_CHECK", "CZZTDM"),
        ({"CLRQ": "2023-02-30"}, "E_DATE_INVALID", "ZZYXQQSRQ"),
        ({"FZRQ": "20231399"}, "E_DATE_INVALID", "ZZBFRQ"),
        ({"XZQHDM": "379999"}, "E_DIVISION_UNKNOWN", "CZZTQHDM"),
        ({"QYMC": "  "}, "E_REQUIRED_MISSING", "CZZT"),
        ({"YYQXZ": "2019-01-01"}, "E_VALIDITY_WINDOW", "ZZYXQJZRQ"),
        ({"JLZT": "9"}, "E_CODE_UNKNOWN", "ZZZT"),
        ({"QYMC": "长" * 300}, "E_FIELD_TOO_LONG", "CZZT"),
    ],
)
def test_each_defect_is_rejected_with_its_reason_and_field(
    changes: dict[str, Any], reason: str, field: str
) -> None:
    with pytest.raises(RecordRejected) as rej:
        normalize(row(**changes), source="mr", source_key="7", source_version="v")
    [err] = rej.value.errors
    assert (err.reason_code, err.field) == (reason, field)
    assert err.source == "mr" and err.record_key == "7"
    assert err.message_zh and err.message_en and err.message_zh != err.message_en


def test_every_defect_of_a_record_is_reported_at_once() -> None:
    with pytest.raises(RecordRejected) as rej:
        normalize(
            row(QYMC="", CLRQ="2023-02-30", XZQHDM="379999"),
            source="mr",
            source_key="7",
            source_version="v",
        )
    assert {e.reason_code for e in rej.value.errors} == {
        "E_REQUIRED_MISSING",
        "E_DATE_INVALID",
        "E_DIVISION_UNKNOWN",
    }
