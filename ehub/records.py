"""The canonical records of the hub (License 电子证照, CaseRecord 办件) and their
JSON form, field codes per STANDARDS.md §1 and notes/common.md (the XML form:
:mod:`ehub.records_xml`).

Conversions are pure and deterministic: the same record always yields the same
dict, the same XML bytes and the same content hash. ``*_from_json`` and
``*_from_xml`` check structure and types (unknown keys are rejected, not
dropped) and raise :class:`ehub.errors.RecordError`; identifier checks and code
list membership belong to normalization, and the full contract to
:mod:`ehub.schemas_check`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any

import msgspec

from ehub import codelists
from ehub.errors import RecordError

__all__ = [
    "CASE_NS",
    "LICENSE_NS",
    "CaseRecord",
    "License",
    "LicenseStatus",
    "Lineage",
    "SealMark",
    "case_content_hash",
    "case_from_json",
    "case_to_json",
    "license_content_hash",
    "license_from_json",
    "license_to_json",
]

LICENSE_NS = "urn:ehub:license:1"
CASE_NS = "urn:ehub:case:1"


class LicenseStatus(StrEnum):
    """ZZZT; the codes of ``schemas/codelists/license_status.json``."""

    VALID = "valid"
    SUSPENDED = "suspended"
    CANCELLED = "cancelled"
    REVOKED = "revoked"
    EXPIRED = "expired"


_STATUS_VALUES = frozenset(m.value for m in LicenseStatus)


@dataclass(frozen=True, slots=True)
class Lineage:
    """Where a record version came from."""

    source: str
    source_key: str
    source_version: str
    content_hash: str
    """sha256 hex of the business content (``license_content_hash`` / ``case_content_hash``)."""


@dataclass(frozen=True, slots=True)
class SealMark:
    """One seal or signature applied to a license (QZ)."""

    sealer: str  # ZZQZR
    sealed_at: str  # ZZQZSJ, ISO-8601 UTC
    seal_name: str  # ZZQZMC


@dataclass(frozen=True, slots=True)
class License:
    """The canonical e-license (电子证照). Field codes in comments."""

    identifier: str  # ZZBS, GB/T 36904
    type_code: str  # ZZLXDM
    type_name: str  # ZZMC
    number: str  # ZZBH
    issuer_name: str  # ZZBFJG
    issuer_code: str  # ZZBFJGDM (USCC)
    issuer_division: str  # ZZBFJGQHDM
    issue_date: date  # ZZBFRQ
    valid_from: date  # ZZYXQQSRQ
    valid_until: date | None  # ZZYXQJZRQ; None = long-term (长期)
    holder_name: str  # CZZT
    holder_code: str  # CZZTDM
    holder_code_type: str  # CZZTDMLXDM
    holder_division: str  # CZZTQHDM
    status: LicenseStatus  # ZZZT
    version: int  # BBH
    lineage: Lineage
    surface: Mapping[str, str] = field(default_factory=dict, hash=False)  # KZ
    related_case: str | None = None  # GLBJBH
    seals: tuple[SealMark, ...] = ()  # QZ

    def __post_init__(self) -> None:
        # Freeze the containers so a "frozen" record really cannot change.
        object.__setattr__(self, "surface", MappingProxyType(dict(self.surface)))
        object.__setattr__(self, "seals", tuple(self.seals))
        if self.status.__class__ is not LicenseStatus:
            if self.status not in _STATUS_VALUES:
                raise _bad(
                    "E_CODE_UNKNOWN",
                    "ZZZT",
                    "not a license status",
                    "证照状态代码不存在",
                    self.status,
                )
            object.__setattr__(self, "status", LicenseStatus(self.status))


@dataclass(frozen=True, slots=True)
class CaseRecord:
    """The canonical case record (办件). Datetimes must carry an offset."""

    case_number: str  # BJBH
    item_code: str  # SSBM
    item_name: str  # SXMC
    agency_name: str  # SSJG
    agency_code: str  # SSJGDM (USCC)
    division: str  # XZQHDM
    case_type: str  # BJLX (code list case_types)
    applicant_type: str  # SQRLX (applicant_types)
    applicant_name: str  # SQRMC
    applicant_code: str  # SQRZJHM
    applicant_code_type: str  # SQRZJLX (holder_code_types)
    channel: str  # SBQD (channels)
    state: str  # BJZT (case_states)
    submitted_at: datetime  # SBSJ
    accepted_at: datetime | None  # SLSJ
    decided_at: datetime | None  # SPSJ
    completed_at: datetime | None  # BJSJ
    promised_days: int | None  # CNBJSX
    legal_days: int | None  # FDBJSX
    result: str | None  # BJJG (case_results)
    result_license_ids: tuple[str, ...]  # JGZZBS
    evaluation: str | None  # HCP (evaluations)
    version: int  # BBH
    lineage: Lineage

    def __post_init__(self) -> None:
        object.__setattr__(self, "result_license_ids", tuple(self.result_license_ids))
        for name, code in _CASE_TIMES:
            v = getattr(self, name)
            if v is not None and v.utcoffset() is None:
                raise _bad(
                    "E_DATE_INVALID", code, "datetime has no UTC offset", "时间缺少时区偏移", v
                )


_CASE_TIMES = (
    ("submitted_at", "SBSJ"),
    ("accepted_at", "SLSJ"),
    ("decided_at", "SPSJ"),
    ("completed_at", "BJSJ"),
)

# --- field specifications ----------------------------------------------------
# (attribute, field code, kind); the order is the XML element order.
_Spec = tuple[tuple[str, str, str], ...]

_LICENSE_SPEC: _Spec = (
    ("identifier", "ZZBS", "str"),
    ("type_code", "ZZLXDM", "str"),
    ("type_name", "ZZMC", "str"),
    ("number", "ZZBH", "str"),
    ("issuer_name", "ZZBFJG", "str"),
    ("issuer_code", "ZZBFJGDM", "str"),
    ("issuer_division", "ZZBFJGQHDM", "str"),
    ("issue_date", "ZZBFRQ", "date"),
    ("valid_from", "ZZYXQQSRQ", "date"),
    ("valid_until", "ZZYXQJZRQ", "odate"),
    ("holder_name", "CZZT", "str"),
    ("holder_code", "CZZTDM", "str"),
    ("holder_code_type", "CZZTDMLXDM", "str"),
    ("", "CZZTDMLX", "derived"),
    ("holder_division", "CZZTQHDM", "str"),
    ("status", "ZZZT", "status"),
    ("version", "BBH", "int"),
    ("surface", "KZ", "kz"),
    ("related_case", "GLBJBH", "ostr"),
    ("lineage", "lineage", "lineage"),
    ("seals", "QZ", "qz"),
)

_CASE_SPEC: _Spec = (
    ("case_number", "BJBH", "str"),
    ("item_code", "SSBM", "str"),
    ("item_name", "SXMC", "str"),
    ("agency_name", "SSJG", "str"),
    ("agency_code", "SSJGDM", "str"),
    ("division", "XZQHDM", "str"),
    ("case_type", "BJLX", "str"),
    ("applicant_type", "SQRLX", "str"),
    ("applicant_name", "SQRMC", "str"),
    ("applicant_code", "SQRZJHM", "str"),
    ("applicant_code_type", "SQRZJLX", "str"),
    ("channel", "SBQD", "str"),
    ("state", "BJZT", "str"),
    ("submitted_at", "SBSJ", "dt"),
    ("accepted_at", "SLSJ", "odt"),
    ("decided_at", "SPSJ", "odt"),
    ("completed_at", "BJSJ", "odt"),
    ("promised_days", "CNBJSX", "oint"),
    ("legal_days", "FDBJSX", "oint"),
    ("result", "BJJG", "ostr"),
    ("result_license_ids", "JGZZBS", "ids"),
    ("evaluation", "HCP", "ostr"),
    ("version", "BBH", "int"),
    ("lineage", "lineage", "lineage"),
)

_LINEAGE_KEYS = ("source", "source_key", "source_version", "content_hash")
_SEAL_KEYS = (("sealer", "ZZQZR"), ("sealed_at", "ZZQZSJ"), ("seal_name", "ZZQZMC"))


def _bad(reason: str, code: str, en: str, zh: str, value: object = None) -> RecordError:
    return RecordError(reason, code, en, zh, value=value)


def _holder_type_name(code: str) -> str:
    entry = codelists.load("holder_code_types").get(code)
    return entry.zh if entry is not None else ""


# --- to JSON -----------------------------------------------------------------


def _dump(rec: Any, spec: _Spec) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for attr, code, kind in spec:
        if kind == "derived":
            out[code] = _holder_type_name(rec.holder_code_type)
            continue
        v = getattr(rec, attr)
        if v is None:
            out[code] = None
        elif kind in ("date", "odate", "dt", "odt"):
            out[code] = v.isoformat()
        elif kind == "status":
            out[code] = v.value
        elif kind == "kz":
            out[code] = {k: v[k] for k in sorted(v)}
        elif kind == "ids":
            out[code] = list(v)
        elif kind == "lineage":
            out[code] = {k: getattr(v, k) for k in _LINEAGE_KEYS}
        elif kind == "qz":
            out[code] = [{c: getattr(s, a) for a, c in _SEAL_KEYS} for s in v]
        else:
            out[code] = v
    return out


def license_to_json(lic: License) -> dict[str, Any]:
    """The JSON form (keys are field codes); ``CZZTDMLX`` comes from the code list."""
    return _dump(lic, _LICENSE_SPEC)


def case_to_json(case: CaseRecord) -> dict[str, Any]:
    """The JSON form of a case record (keys are field codes)."""
    return _dump(case, _CASE_SPEC)


# --- from JSON ---------------------------------------------------------------


_ZH_TYPE = {"string": "字符串", "integer": "整数", "object": "对象", "array": "数组"}


def _need(ok: bool, code: str, what: str, raw: Any) -> None:
    if not ok:
        raise _bad("E_VALUE_INVALID", code, f"must be {what}", f"必须为{_ZH_TYPE[what]}", raw)


def _str(code: str, raw: Any) -> str:
    _need(isinstance(raw, str), code, "string", raw)
    return str(raw)


def _parse_value(kind: str, code: str, raw: Any) -> Any:
    if raw is None and kind in ("odate", "odt", "oint", "ostr"):
        return None
    if kind in ("date", "odate"):
        s = _str(code, raw)
        try:
            if len(s) != 10:  # fromisoformat would also take the basic form 20230101
                raise ValueError(s)
            return date.fromisoformat(s)
        except ValueError:
            raise _bad(
                "E_DATE_INVALID", code, "must be a date YYYY-MM-DD", "日期格式应为YYYY-MM-DD", raw
            ) from None
    if kind in ("dt", "odt"):
        try:
            v = datetime.fromisoformat(_str(code, raw))
        except ValueError:
            v = None
        if v is None or v.utcoffset() is None:
            raise _bad(
                "E_DATE_INVALID",
                code,
                "must be ISO-8601 with a UTC offset",
                "时间格式应为带时区的ISO-8601",
                raw,
            )
        return v
    if kind in ("int", "oint"):
        _need(isinstance(raw, int) and not isinstance(raw, bool), code, "integer", raw)
        return raw
    if kind == "status":
        try:
            return LicenseStatus(_str(code, raw))
        except ValueError:
            raise _bad(
                "E_CODE_UNKNOWN", code, "not a license status", "证照状态代码不存在", raw
            ) from None
    if kind == "kz":
        _need(isinstance(raw, dict), code, "object", raw)
        return {_str(code, k): _str(f"{code}.{k}", v) for k, v in raw.items()}
    if kind == "ids":
        _need(isinstance(raw, list), code, "array", raw)
        return tuple(_str(code, x) for x in raw)
    if kind == "lineage":
        return Lineage(**_fields(code, raw, {k: k for k in _LINEAGE_KEYS}))
    if kind == "qz":
        _need(isinstance(raw, list), code, "array", raw)
        return tuple(SealMark(**_fields(code, s, dict(_SEAL_KEYS))) for s in raw)
    return _str(code, raw)


def _fields(code: str, raw: Any, names: Mapping[str, str]) -> dict[str, str]:
    """Map the string members of a small object (attr -> key) strictly."""
    _need(isinstance(raw, dict), code, "object", raw)
    _no_extra(code, raw, set(names.values()))
    out = {}
    for attr, key in names.items():
        if key not in raw:
            raise _bad("E_REQUIRED_MISSING", f"{code}.{key}", "is missing", "缺失", None)
        out[attr] = _str(f"{code}.{key}", raw[key])
    return out


def _no_extra(where: str, raw: Mapping[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(raw) - allowed)
    if extra:
        raise _bad("E_SCHEMA_INVALID", where, f"unknown fields {extra}", f"未知字段 {extra}", extra)


def _load(d: Any, spec: _Spec, cls: Callable[..., Any], what: str) -> Any:
    if not isinstance(d, Mapping):
        raise _bad(
            "E_VALUE_INVALID", what, "record must be a JSON object", "记录必须为JSON对象", None
        )
    _no_extra(what, d, {code for _, code, _ in spec})
    kwargs = {}
    for attr, code, kind in spec:
        if kind == "derived":
            continue  # recomputed from the code list, never trusted from input
        if code not in d:
            if kind in ("kz", "qz"):
                continue  # defaults: no surface fields, no seals
            raise _bad("E_REQUIRED_MISSING", code, "required field is missing", "必填字段缺失")
        kwargs[attr] = _parse_value(kind, code, d[code])
    return cls(**kwargs)


def license_from_json(d: Mapping[str, Any]) -> License:
    """Parse the JSON form; RecordError on structure or type errors."""
    lic: License = _load(d, _LICENSE_SPEC, License, "license")
    return lic


def case_from_json(d: Mapping[str, Any]) -> CaseRecord:
    """Parse the JSON form of a case record; RecordError on structure or type errors."""
    case: CaseRecord = _load(d, _CASE_SPEC, CaseRecord, "case")
    return case


# --- content hash ------------------------------------------------------------

# Not business content: the hub's version counter, provenance, seals, and the
# code-type name (derived from the code through a code list that may be reworded).
_NOT_CONTENT = frozenset({"BBH", "lineage", "QZ", "CZZTDMLX"})


def _content_hash(doc: dict[str, Any], spec: _Spec, rec: Any) -> str:
    body = {k: v for k, v in doc.items() if k not in _NOT_CONTENT}
    for attr, code, kind in spec:
        # The same instant reported with another offset is the same content.
        if kind in ("dt", "odt") and getattr(rec, attr) is not None:
            body[code] = getattr(rec, attr).astimezone(UTC).isoformat()
    return hashlib.sha256(_CANONICAL_JSON.encode(body)).hexdigest()


#: Canonical JSON of every content hash: sorted keys, no blanks, UTF-8 unescaped —
#: byte for byte ``json.dumps(sort_keys=True, separators=(",", ":"),
#: ensure_ascii=False).encode()`` (``tests/ehub/test_records.py`` holds the two
#: equal), in C and without the intermediate str.
_CANONICAL_JSON = msgspec.json.Encoder(order="sorted")


def license_content_hash(lic: License) -> str:
    """sha256 hex over canonical JSON of everything but BBH, lineage, QZ (and CZZTDMLX).

    Builds the same body as ``license_to_json`` minus those keys, directly (this
    runs once per normalized record; tests pin it to the generic form)."""
    until = lic.valid_until
    body = {
        "ZZBS": lic.identifier,
        "ZZLXDM": lic.type_code,
        "ZZMC": lic.type_name,
        "ZZBH": lic.number,
        "ZZBFJG": lic.issuer_name,
        "ZZBFJGDM": lic.issuer_code,
        "ZZBFJGQHDM": lic.issuer_division,
        "ZZBFRQ": lic.issue_date.isoformat(),
        "ZZYXQQSRQ": lic.valid_from.isoformat(),
        "ZZYXQJZRQ": None if until is None else until.isoformat(),
        "CZZT": lic.holder_name,
        "CZZTDM": lic.holder_code,
        "CZZTDMLXDM": lic.holder_code_type,
        "CZZTQHDM": lic.holder_division,
        "ZZZT": lic.status.value,
        "KZ": dict(lic.surface),
        "GLBJBH": lic.related_case,
    }
    return hashlib.sha256(_CANONICAL_JSON.encode(body)).hexdigest()


def _license_content_hash_generic(lic: License) -> str:
    return _content_hash(license_to_json(lic), _LICENSE_SPEC, lic)


def case_content_hash(case: CaseRecord) -> str:
    """sha256 hex over canonical JSON of everything but BBH and lineage."""
    return _content_hash(case_to_json(case), _CASE_SPEC, case)
