"""Market-regulation business licenses (营业执照) → canonical License.

The mapping of the market-regulation database's legacy columns. Declarative
YAML source specs replace this hand mapping in the onboarding work; the field
checks stay the same.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import replace
from functools import lru_cache
from typing import Any, TypeVar

from ehub import codelists, divisions, identifiers
from ehub.errors import RecordError
from ehub.normalize import RecordRejected
from ehub.normalize.fields import optional_text, parse_date, parse_until, text
from ehub.records import License, LicenseStatus, Lineage, license_content_hash

T = TypeVar("T")

BUSINESS_LICENSE_NAME = "营业执照"

#: JLZT (record status) of the market-regulation system → license status.
STATUS_MAP = {"1": LicenseStatus.VALID, "2": LicenseStatus.REVOKED, "3": LicenseStatus.CANCELLED}

SURFACE = (
    ("FDDBR", "KZ_FDDBR", 100),  # 法定代表人
    ("QYLX", "KZ_QYLX", 100),  # 类型
    ("ZCZB", "KZ_ZCZB", 100),  # 注册资本
    ("ZS", "KZ_ZS", 300),  # 住所
    ("JYFW", "KZ_JYFW", 4000),  # 经营范围
)


@lru_cache(maxsize=1)
def business_license_type() -> tuple[str, str]:
    """(type code, name) of the business license from the license-type code list."""
    cl = codelists.load("license_types")
    for code in cl.codes:
        if cl.zh(code) == BUSINESS_LICENSE_NAME:
            return code, BUSINESS_LICENSE_NAME
    raise LookupError("code list license_types has no entry for 营业执照")


def normalize(
    payload: dict[str, Any], *, source: str, source_key: str, source_version: str
) -> License:
    """Map one row; raise :class:`RecordRejected` listing every defect found."""
    errors: list[RecordError] = []

    def field(fn: Callable[[], T]) -> T | None:
        try:
            return fn()
        except RecordError as exc:
            exc.source, exc.record_key = source, source_key
            errors.append(exc)
            return None

    holder_name = field(lambda: text(payload, "QYMC", "CZZT"))
    holder_code = field(
        lambda: identifiers.check_uscc(text(payload, "TYSHXYDM", "CZZTDM"), field="CZZTDM")
    )
    number = field(
        lambda: text(payload, "ZZBH" if "ZZBH" in payload else "ZCH", "ZZBH", max_len=64)
    )
    issuer_name = field(lambda: text(payload, "DJJG", "ZZBFJG"))
    issuer_code = field(
        lambda: identifiers.check_uscc(text(payload, "DJJGDM", "ZZBFJGDM"), field="ZZBFJGDM")
    )
    division = field(
        lambda: divisions.check_division(
            text(payload, "XZQHDM", "CZZTQHDM", max_len=12), field="CZZTQHDM"
        )
    )
    issue_date = field(lambda: parse_date(text(payload, "FZRQ", "ZZBFRQ"), "ZZBFRQ"))
    valid_from = field(lambda: parse_date(text(payload, "CLRQ", "ZZYXQQSRQ"), "ZZYXQQSRQ"))
    valid_until = field(lambda: parse_until(payload.get("YYQXZ"), "ZZYXQJZRQ"))
    status_code = str(payload.get("JLZT") or "").strip()
    status = STATUS_MAP.get(status_code)
    if status is None:
        errors.append(
            RecordError(
                "E_CODE_UNKNOWN",
                "ZZZT",
                f"unknown record status JLZT={status_code!r}",
                f"未知的登记状态代码 JLZT={status_code!r}",
                source=source,
                record_key=source_key,
                value=status_code,
            )
        )
    surface: dict[str, str] = {}
    for column, code, limit in SURFACE:
        v = field(functools.partial(optional_text, payload, column, code, max_len=limit))
        if v:
            surface[code] = v
    if valid_from is not None and valid_until is not None and valid_until < valid_from:
        errors.append(
            RecordError(
                "E_VALIDITY_WINDOW",
                "ZZYXQJZRQ",
                f"validity ends {valid_until} before it starts {valid_from}",
                f"有效期截止日期 {valid_until} 早于起始日期 {valid_from}",
                source=source,
                record_key=source_key,
                value=str(valid_until),
            )
        )
    if errors:
        raise RecordRejected(errors)
    assert holder_name and holder_code and number and issuer_name and issuer_code and division
    assert issue_date and valid_from and status is not None
    type_code, type_name = business_license_type()
    identifier = identifiers.make_license_identifier(
        type_code, issuer_code, identifiers.serial_from_key(f"{source}:{source_key}")
    )
    county = divisions.county_of(division)
    draft = License(
        identifier=identifier,
        type_code=type_code,
        type_name=type_name,
        number=number,
        issuer_name=issuer_name,
        issuer_code=issuer_code,
        issuer_division=county,
        issue_date=issue_date,
        valid_from=valid_from,
        valid_until=valid_until,
        holder_name=holder_name,
        holder_code=holder_code,
        holder_code_type="001",
        holder_division=division,
        status=status,
        version=1,
        lineage=Lineage(source, source_key, source_version, ""),
        surface=surface,
    )
    return _with_hash(draft)


def _with_hash(lic: License) -> License:
    h = license_content_hash(lic)
    return replace(lic, lineage=replace(lic.lineage, content_hash=h))
