"""The canonical fields a source spec can map to, with their validation rules.

Field codes follow STANDARDS.md §1 (licenses) and the case-record element set
of §3. ``kind`` decides how the mapped value is checked in
:mod:`ehub.normalize.canonical`; ``codelist`` names a list in
``schemas/codelists``; ``max_len`` is the limit behind E_FIELD_TOO_LONG.

Which license fields are required is *unconfirmed* in the national text
(STANDARDS.md §1): the set below is the one treated as required in practice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal[
    "text", "uscc", "holder_code", "applicant_code", "division", "date", "datetime",
    "int", "code", "license_id", "ids",
]  # fmt: skip


@dataclass(frozen=True, slots=True)
class FieldRule:
    code: str
    kind: Kind
    required: bool = False
    max_len: int = 200
    codelist: str | None = None
    name_zh: str = ""


def _table(*rules: FieldRule) -> dict[str, FieldRule]:
    return {r.code: r for r in rules}


LICENSE_FIELDS: dict[str, FieldRule] = _table(
    FieldRule("ZZBS", "license_id", name_zh="证照标识"),
    FieldRule("ZZBH", "text", True, 64, name_zh="证照编号"),
    FieldRule("ZZBFJG", "text", True, 200, name_zh="颁发机构"),
    FieldRule("ZZBFJGDM", "uscc", True, name_zh="颁发机构代码"),
    FieldRule("ZZBFJGQHDM", "division", name_zh="颁发机构行政区划代码"),
    FieldRule("ZZBFRQ", "date", True, name_zh="颁发日期"),
    FieldRule("ZZYXQQSRQ", "date", name_zh="有效期起始日期"),
    FieldRule("ZZYXQJZRQ", "date", name_zh="有效期截止日期"),
    FieldRule("CZZT", "text", True, 200, name_zh="持证主体"),
    FieldRule("CZZTDM", "holder_code", True, 64, name_zh="持证主体代码"),
    FieldRule("CZZTDMLXDM", "code", True, 3, "holder_code_types", name_zh="持证主体代码类型代码"),
    FieldRule("CZZTQHDM", "division", True, name_zh="持证主体行政区划代码"),
    FieldRule("ZZZT", "code", True, 20, "license_status", name_zh="证照状态"),
    FieldRule("GLBJBH", "text", max_len=64, name_zh="关联办件编号"),
    FieldRule("BBH", "int", name_zh="版本号"),
)

CASE_FIELDS: dict[str, FieldRule] = _table(
    FieldRule("BJBH", "text", True, 64, name_zh="办件编号"),
    FieldRule("SSBM", "text", True, 64, name_zh="实施编码"),
    FieldRule("SXMC", "text", True, 200, name_zh="事项名称"),
    FieldRule("SSJG", "text", True, 200, name_zh="实施机构"),
    FieldRule("SSJGDM", "uscc", True, name_zh="实施机构代码"),
    FieldRule("XZQHDM", "division", True, name_zh="行政区划代码"),
    FieldRule("BJLX", "code", True, 8, "case_types", name_zh="办件类型"),
    FieldRule("SQRLX", "code", True, 8, "applicant_types", name_zh="申请人类型"),
    FieldRule("SQRMC", "text", True, 200, name_zh="申请人名称"),
    FieldRule("SQRZJHM", "applicant_code", True, 64, name_zh="申请人证件号码"),
    FieldRule("SQRZJLX", "code", True, 3, "holder_code_types", name_zh="申请人证件类型"),
    FieldRule("SBQD", "code", True, 20, "channels", name_zh="申报渠道"),
    FieldRule("BJZT", "code", True, 20, "case_states", name_zh="办件状态"),
    FieldRule("SBSJ", "datetime", True, name_zh="申报时间"),
    FieldRule("SLSJ", "datetime", name_zh="受理时间"),
    FieldRule("SPSJ", "datetime", name_zh="审批时间"),
    FieldRule("BJSJ", "datetime", name_zh="办结时间"),
    FieldRule("CNBJSX", "int", name_zh="承诺办结时限"),
    FieldRule("FDBJSX", "int", name_zh="法定办结时限"),
    FieldRule("BJJG", "code", False, 20, "case_results", name_zh="办结结果"),
    FieldRule("JGZZBS", "ids", name_zh="结果证照标识"),
    FieldRule("HCP", "code", False, 2, "evaluations", name_zh="好差评"),
    FieldRule("BBH", "int", name_zh="版本号"),
)

SURFACE_MAX_LEN = 4000


def fields_of(record_kind: str) -> dict[str, FieldRule]:
    return LICENSE_FIELDS if record_kind == "license" else CASE_FIELDS


def required_fields(record_kind: str) -> tuple[str, ...]:
    return tuple(c for c, r in fields_of(record_kind).items() if r.required)
