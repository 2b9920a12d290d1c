"""Spec-driven normalization: a department payload → canonical License / CaseRecord.

:class:`SpecNormalizer` is built once per run from a source spec; its
``normalize`` is pure (no clock, no network, no database) and raises
:class:`~ehub.normalize.RecordRejected` listing every defect of the record,
each a :class:`~ehub.errors.RecordError` with reason code, canonical field,
bilingual message and value. Checks per STANDARDS.md: identifiers (USCC,
citizen ID, GB/T 36904 license identifier — verified when given, generated when
absent), GB/T 2260 division codes, dates and validity windows, code lists,
required fields, field lengths, mojibake, and the source's schema contract.

Checks that need the store (duplicates, conflicting versions, status
transitions) belong to the normalize stage (:mod:`ehub.pipeline.normalize`).
"""

from __future__ import annotations

import functools
import itertools
import re
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any

from ehub import codelists, divisions, identifiers
from ehub.errors import RecordError
from ehub.normalize import RecordRejected
from ehub.normalize.case_json import case_hash
from ehub.normalize.fastpath import FastField, ValuesFn, compile_values
from ehub.records import (
    CaseRecord,
    License,
    LicenseStatus,
    Lineage,
    license_content_hash,
)
from ehub.sources.fields import SURFACE_MAX_LEN, FieldRule, fields_of
from ehub.sources.mapping import LOOKUPS_KEY, compile_mapping
from ehub.sources.spec import SourceSpec

#: Signs of text decoded with the wrong encoding: the replacement character,
#: GBK's "锟斤拷", UTF-8 bytes read as Latin-1 (a lead byte + a continuation; the
#: third byte may be a blank that trimming removed), and the U+0300..U+07FF
#: letters (Greek, Cyrillic, Hebrew, Arabic…) that GBK bytes read as UTF-8
#: produce and Chinese records never hold. "·" (U+00B7, in minority names) is fine.
#: C0 controls other than tab / line breaks, and DEL, come from binary junk or a broken
#: export; XML 1.0 cannot carry them, so the license's canonical XML could not be written.
MOJIBAKE = re.compile(
    "\ufffd|锟斤拷|[\u00c0-\u00ef][\u0080-\u00bf]|[\u0300-\u07ff]|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"
)
_EXT_NAME = re.compile(r"[^A-Z0-9]+")
_ORG_CODE_SHAPE = re.compile(r"[0-9A-Z]{8}-?[0-9X]")

Record = License | CaseRecord


class SpecNormalizer:
    """Normalizer of one source spec (compiled mapping + field rules)."""

    def __init__(self, spec: SourceSpec, *, fast: bool = True) -> None:
        self.spec = spec
        self.source = spec.id
        self.kind = spec.record_kind
        self.fields = compile_mapping(spec)
        self.rules: dict[str, FieldRule] = fields_of(self.kind)
        self.read_fields = spec.read_fields() | {LOOKUPS_KEY}
        self.contract = spec.contract
        self.nested = spec.nested_fields()
        self.required_sources = frozenset(n for f in self.fields for n in f.sources)
        self.dropped: Counter[str] = Counter()
        """Source fields dropped under ``contract.unknown_fields: drop`` (name → records)."""
        if self.kind == "license":
            self.type_code, self.type_name = spec.license_type_code()
        self._codelists = {
            r.codelist: frozenset(codelists.load(r.codelist).codes)
            for r in self.rules.values()
            if r.codelist
        }
        self.plan = [(f.target, f.get, self._checker(f.target)) for f in self.fields]
        self.surface_fields = tuple(f.target for f in self.fields if f.target.startswith("KZ_"))
        self._values = self._compile_values() if fast else None

    # -- public ------------------------------------------------------------------

    def normalize(self, payload: Mapping[str, Any], source_key: str, source_version: str) -> Record:
        if "__error__" in payload:  # undecodable at the source: nothing else to check
            self._raise([
                _err("E_VALUE_INVALID", "payload", f"unreadable source record: {payload['__error__']}",
                     f"源记录无法解析：{payload['__error__']}", payload.get("__raw__"))
            ], source_key)  # fmt: skip
        errors: list[RecordError] = []
        values: dict[str, Any] = {}
        extensions = self._contract(payload, errors)
        # A field whose source is absent (missing_fields: reject) is reported once.
        absent = {e.field for e in errors if e.reason_code == "E_SCHEMA_INVALID"}
        if self._values is not None:
            values = self._values(payload, errors, absent)
        else:
            for target, get, check in self.plan:
                if target in absent:
                    values[target] = None
                    continue
                try:
                    values[target] = check(get(payload), errors)
                except RecordError as exc:
                    errors.append(exc)
                    values[target] = None
        # The cross-field checks of _license / _case run even after a field failed
        # (so every defect is listed); they raise before assembling.
        if self.kind == "license":
            return self._license(values, extensions, source_key, source_version, errors)
        return self._case(values, source_key, source_version, errors)

    # -- contract & field checks --------------------------------------------------

    def _contract(self, payload: Mapping[str, Any], errors: list[RecordError]) -> dict[str, str]:
        extensions: dict[str, str] = {}
        unknown = [k for k in payload.keys() - self.read_fields if not k.startswith("__")]
        for top, known in self.nested.items():
            inner = payload.get(top)
            if isinstance(inner, Mapping):
                unknown += [f"{top}.{k}" for k in inner.keys() - known]
        if unknown:
            unknown.sort()
            mode = self.contract.unknown_fields
            if mode == "reject":
                for k in unknown:
                    errors.append(
                        _err("E_FIELD_UNKNOWN", k,
                             f"source field {k!r} is not declared in the source spec",
                             f"源字段 {k!r} 未在接入配置中声明", _dig(payload, k))
                    )  # fmt: skip
            elif mode == "drop":
                self.dropped.update(unknown)
            else:
                for k in unknown:
                    v = _dig(payload, k)
                    if v is not None and v != "":
                        extensions[_ext_code(k)] = str(v)[:SURFACE_MAX_LEN]
        if self.contract.missing_fields == "reject" and not self.required_sources <= payload.keys():
            for f in self.fields:
                for name in f.sources:
                    if name not in payload:
                        errors.append(
                            _err("E_SCHEMA_INVALID", f.target,
                                 f"source field {name!r} (for {f.target}) is absent from the record",
                                 f"源记录缺少字段 {name!r}（映射到 {f.target}）", None)
                        )  # fmt: skip
        return extensions

    def _compile_values(self) -> ValuesFn:
        fields: list[FastField] = []
        limits: dict[str, int] = {}
        known: dict[str, frozenset[str]] = {}
        for target, get, check in self.plan:
            rule = self.rules.get(target)
            kind = rule.kind if rule else ("text" if target.startswith("KZ_") else None)
            limits[target] = rule.max_len if rule else SURFACE_MAX_LEN
            if rule and rule.codelist:
                known[target] = self._codelists[rule.codelist]
            fields.append((target, self.spec.mapping[target], kind, get, check))
        return compile_values(
            fields,
            codelists=self.spec.codelists,
            known_codes=known,
            limits=limits,
            mojibake=MOJIBAKE.search,
            known_division=divisions.is_known,
            check_uscc=_cached_uscc,
        )

    def _checker(self, code: str) -> Callable[[Any, list[RecordError]], Any]:
        """The field check of ``code`` as one closure (the hot path: no dispatch per value)."""
        rule = self.rules.get(code)
        generic = functools.partial(self._check, code)
        if rule is None and code.startswith("KZ_"):
            rule = FieldRule(code, "text", max_len=SURFACE_MAX_LEN)
        if rule is None or rule.kind not in ("text", "uscc", "division", "code"):
            return generic
        required, limit, kind = rule.required, rule.max_len, rule.kind
        text_ = self._text
        known = self._codelists.get(rule.codelist or "", frozenset())
        known_div = divisions.is_known
        check_uscc = _cached_uscc  # issuer / agency codes repeat across records

        def fast(value: Any, errors: list[RecordError]) -> Any:
            if value is None or value == "":
                return generic(value, errors)  # required / empty handling
            if kind == "text":
                if value.__class__ is str and len(value) <= limit and not MOJIBAKE.search(value):
                    return value
                return text_(code, value, limit, errors)
            if kind == "code":
                return value if value in known else generic(value, errors)
            if kind == "division":
                return (
                    value if value.__class__ is str and known_div(value) else generic(value, errors)
                )
            return check_uscc(value, code)

        del required
        return fast

    def _check(self, code: str, value: Any, errors: list[RecordError]) -> Any:
        rule = self.rules.get(code)
        if value is None or value == "" or value == ():
            if rule is not None and rule.required:
                name = rule.name_zh or code
                errors.append(
                    _err("E_REQUIRED_MISSING", code, f"required field {code} is empty",
                         f"必填字段 {code}（{name}）为空", None)
                )  # fmt: skip
            return None
        if rule is None:  # a KZ_* surface field
            return self._text(code, value, SURFACE_MAX_LEN, errors)
        kind = rule.kind
        try:
            if kind == "text":
                return self._text(code, value, rule.max_len, errors)
            if kind == "uscc":
                return identifiers.check_uscc(value, field=code)
            if kind == "division":
                return divisions.check_division(value, field=code)
            if kind == "code":
                if value not in self._codelists[rule.codelist or ""]:
                    errors.append(
                        _err("E_CODE_UNKNOWN", code,
                             f"{code}={value!r} is not in the code list {rule.codelist}",
                             f"{code}={value!r} 不在代码表 {rule.codelist} 中", value)
                    )  # fmt: skip
                    return None
                return value
            if kind == "license_id":
                identifiers.parse_license_identifier(value, field=code)
                return identifiers.normalize(value)
            if kind in ("holder_code", "applicant_code"):
                return self._text(code, identifiers.normalize(value), rule.max_len, errors)
            if kind in ("date", "datetime", "int", "ids"):
                return value
        except RecordError as exc:
            errors.append(exc)
            return None
        return value

    def _text(self, code: str, value: Any, limit: int, errors: list[RecordError]) -> str | None:
        s = value if isinstance(value, str) else str(value)
        if len(s) > limit:
            errors.append(
                _err("E_FIELD_TOO_LONG", code, f"{code} is {len(s)} characters, limit {limit}",
                     f"{code} 长度 {len(s)} 超过上限 {limit}", s[:50])
            )  # fmt: skip
            return None
        if MOJIBAKE.search(s):
            # The text stays out of the message (it may be a person's name); the value
            # column keeps it, masked wherever it is shown.
            at = MOJIBAKE.search(s)
            pos = at.start() + 1 if at else 0
            errors.append(
                _err("E_ENCODING", code,
                     f"{code} looks garbled (text decoded with the wrong encoding, or a "
                     f"control character) at character {pos}",
                     f"{code} 出现乱码（字符编码错误或控制字符），位于第 {pos} 个字符", s[:50])
            )  # fmt: skip
            return None
        return s

    def _holder_code(self, code: str, value: str, code_type: str, errors: list[RecordError]) -> str:
        if not value or not code_type:  # missing or invalid: already reported
            return value
        try:
            if code_type == "001":
                return identifiers.check_uscc(value, field=code)
            if code_type == "111":
                return identifiers.check_citizen_id(value, field=code)
            if code_type == "099" and _ORG_CODE_SHAPE.fullmatch(value):
                # Other organizations still identified by a GB 11714 organization code.
                if not identifiers.is_valid_org_code(value):
                    errors.append(
                        _err("E_ORG_CODE_CHECK", code,
                             "the organization code (GB 11714) check character is wrong",
                             "组织机构代码校验码错误", value)
                    )  # fmt: skip
                return value
        except RecordError as exc:
            errors.append(exc)
        return value

    # -- assembly ------------------------------------------------------------------

    def _license(
        self,
        v: dict[str, Any],
        extensions: dict[str, str],
        key: str,
        sver: str,
        errors: list[RecordError],
    ) -> License:
        start_failed = bool(errors) and any(e.field == "ZZYXQQSRQ" for e in errors)
        holder_code = self._holder_code("CZZTDM", v["CZZTDM"], v["CZZTDMLXDM"], errors)
        issue: date = v["ZZBFRQ"]
        start: date = v.get("ZZYXQQSRQ") or issue
        until: date | None = v.get("ZZYXQJZRQ")
        if until is not None and start is not None and not start_failed and until < start:
            errors.append(
                _err("E_VALIDITY_WINDOW", "ZZYXQJZRQ",
                     f"validity ends {until} before it starts {start}",
                     f"有效期截止日期 {until} 早于起始日期 {start}", str(until))
            )  # fmt: skip
        if errors:
            self._raise(errors, key)
        issuer = v["ZZBFJGDM"]
        number = v["ZZBH"]
        identifier = v.get("ZZBS") or identifiers.assemble_license_identifier(
            self.type_code,
            issuer,
            identifiers.serial_from_key(f"{self.type_code}|{issuer}|{number}"),
        )
        issuer_div = v.get("ZZBFJGQHDM") or _issuer_division(issuer, v["CZZTQHDM"])
        surface = {c: s for c in self.surface_fields if (s := v[c])}
        surface.update(extensions)
        lic = License(
            identifier=identifier,
            type_code=self.type_code,
            type_name=self.type_name,
            number=number,
            issuer_name=v["ZZBFJG"],
            issuer_code=issuer,
            issuer_division=issuer_div,
            issue_date=issue,
            valid_from=start,
            valid_until=until,
            holder_name=v["CZZT"],
            holder_code=holder_code,
            holder_code_type=v["CZZTDMLXDM"],
            holder_division=v["CZZTQHDM"],
            status=LicenseStatus(v["ZZZT"]),
            version=v.get("BBH") or 0,
            lineage=Lineage(self.source, key, sver, ""),
            surface=surface,
            related_case=v.get("GLBJBH"),
        )
        # Frozen record, hash of its own content: set once, right after construction.
        object.__setattr__(
            lic, "lineage", Lineage(self.source, key, sver, license_content_hash(lic))
        )
        return lic

    def _case(
        self, v: dict[str, Any], key: str, sver: str, errors: list[RecordError]
    ) -> CaseRecord:
        code = self._holder_code("SQRZJHM", v["SQRZJHM"], v["SQRZJLX"], errors)
        times = [(c, v.get(c)) for c in ("SBSJ", "SLSJ", "SPSJ", "BJSJ")]
        seen: list[tuple[str, datetime]] = [(c, t) for c, t in times if t is not None]
        for (c1, t1), (c2, t2) in itertools.pairwise(seen):
            if t2 < t1:
                errors.append(
                    _err("E_DATE_INVALID", c2, f"{c2} {t2.isoformat()} is before {c1} {t1.isoformat()}",
                         f"{c2} {t2.isoformat()} 早于 {c1} {t1.isoformat()}", t2.isoformat())
                )  # fmt: skip
        self._raise(errors, key)
        case = CaseRecord(
            case_number=v["BJBH"],
            item_code=v["SSBM"],
            item_name=v["SXMC"],
            agency_name=v["SSJG"],
            agency_code=v["SSJGDM"],
            division=v["XZQHDM"],
            case_type=v["BJLX"],
            applicant_type=v["SQRLX"],
            applicant_name=v["SQRMC"],
            applicant_code=code,
            applicant_code_type=v["SQRZJLX"],
            channel=v["SBQD"],
            state=v["BJZT"],
            submitted_at=v["SBSJ"],
            accepted_at=v.get("SLSJ"),
            decided_at=v.get("SPSJ"),
            completed_at=v.get("BJSJ"),
            promised_days=v.get("CNBJSX"),
            legal_days=v.get("FDBJSX"),
            result=v.get("BJJG"),
            result_license_ids=v.get("JGZZBS") or (),
            evaluation=v.get("HCP"),
            version=v.get("BBH") or 0,
            lineage=Lineage(self.source, key, sver, ""),
        )
        object.__setattr__(case, "lineage", Lineage(self.source, key, sver, case_hash(case)))
        return case

    def _raise(self, errors: list[RecordError], key: str) -> None:
        if errors:
            for e in errors:
                e.source, e.record_key = self.source, key
            raise RecordRejected(errors)


@functools.lru_cache(maxsize=8192)
def _cached_uscc(value: str, field: str) -> str:
    return identifiers.check_uscc(value, field=field)


def _err(reason: str, field: str, en: str, zh: str, value: object) -> RecordError:
    return RecordError(reason, field, en, zh, value=value)


def _dig(payload: Mapping[str, Any], path: str) -> Any:
    if path in payload:  # a top-level name may itself contain a dot
        return payload[path]
    top, _, rest = path.partition(".")
    v = payload.get(top)
    return v.get(rest) if rest and isinstance(v, Mapping) else v


def _ext_code(name: str) -> str:
    """Surface code of an undeclared source field kept as an extension (KZ_EXT_*)."""
    ascii_name = _EXT_NAME.sub("_", name.upper()).strip("_")
    return f"KZ_EXT_{ascii_name or 'F' + name.encode('utf-8').hex()[:16].upper()}"


def _issuer_division(issuer_uscc: str, holder_division: str) -> str:
    """The issuer's county: the division segment of its USCC when known, else the holder's."""
    embedded = issuer_uscc[2:8]
    return embedded if divisions.is_known(embedded) else divisions.county_of(holder_division)
