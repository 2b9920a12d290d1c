"""The province's indicators, computed from the hub store (数字驾驶舱的数据).

Two kinds of figures, both read-only queries over a :class:`~ehub.store.db.Store`:

- the **national evaluation indicators** (:func:`national`) that the province
  answers for (STANDARDS.md §6): licenses aggregated, share sealed or signed,
  license types with licenses attached, case records aggregated, share of case
  records linked to a service item, share of licenses linked to a case record,
  seals registered (备案). Every figure counts *records*, not versions: a
  license is its identifier, judged by its newest version; a case record is its
  case number, judged by its newest version;
- the **operations breakdowns** behind the dashboard's charts: per department,
  per license type and per day (records extracted, quarantined by reason, sealed);
  those of delivery and the return feeds (per platform, reconciliation
  differences, feed lag per office) are in :mod:`ehub.indicators_ops`.

Aggregation happens in SQL (SQLite and PostgreSQL alike); only the latency
percentiles read rows, at most ``window`` per platform. Nothing here writes,
and nothing is hard-coded: every figure comes from the store or the code lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from ehub import codelists
from ehub.store.db import Store
from ehub.store.models import (
    CaseRow,
    DeliveryRow,
    LicenseRow,
    QuarantineRow,
    RawRecord,
    SealRow,
    SignatureRow,
    Source,
)

__all__ = [
    "DayStats", "DepartmentStats", "Filters", "Indicator", "ReasonStats", "TypeStats",
    "by_department", "by_license_type", "daily", "national", "quarantine_reasons",
]  # fmt: skip

#: Types with more licenses attached than this count as "in use" (the seeds' figure).
TYPES_IN_USE_THRESHOLD = 20
#: Length of a service item implementation code (实施编码) and of the agency USCC it starts with.
ITEM_CODE_LENGTH = 31
USCC_LENGTH = 18


@dataclass(frozen=True, slots=True)
class Indicator:
    """One national evaluation indicator."""

    name: str
    """Stable machine name (the dashboard's ``data-indicator``)."""
    label_zh: str
    unit: Literal["count", "share"]
    numerator: int
    denominator: int | None = None
    """For a share: what it is a share of (None for a count)."""
    note_zh: str = ""

    @property
    def value(self) -> float | int | None:
        if self.unit == "count":
            return self.numerator
        return self.numerator / self.denominator if self.denominator else None

    def display(self) -> str:
        """As shown on the dashboard: ``1234`` or ``42.5%`` (``—`` for a share of nothing)."""
        value = self.value
        if value is None:
            return "—"
        return str(value) if self.unit == "count" else f"{value * 100:.1f}%"

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "label_zh": self.label_zh, "unit": self.unit,
                "value": self.value, "numerator": self.numerator,
                "denominator": self.denominator, "display": self.display(),
                "note_zh": self.note_zh}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Filters:
    """What the breakdowns are restricted to. The license type applies to license
    figures only (raw records and quarantine have no type until normalized)."""

    department: str | None = None
    """A department's name as the sources table holds it."""
    license_type: str | None = None
    since: datetime | None = None


@dataclass(frozen=True, slots=True)
class DepartmentStats:
    department: str
    extracted: int
    normalized: int
    quarantined: int
    licenses: int
    sealed: int
    cases: int

    @property
    def sealed_share(self) -> float | None:
        return self.sealed / self.licenses if self.licenses else None


@dataclass(frozen=True, slots=True)
class TypeStats:
    type_code: str
    name_zh: str
    licenses: int
    sealed: int

    @property
    def sealed_share(self) -> float | None:
        return self.sealed / self.licenses if self.licenses else None


@dataclass(frozen=True, slots=True)
class ReasonStats:
    reason_code: str
    name_zh: str
    records: int
    """Distinct raw records with this reason."""


@dataclass(frozen=True, slots=True)
class DayStats:
    day: str
    """China Standard Time date, ``YYYY-MM-DD``."""
    extracted: int = 0
    quarantined: int = 0
    sealed: int = 0
    delivered: int = 0


# --- helpers -----------------------------------------------------------------


def _newest_licenses() -> Any:
    """(identifier, newest version) of every license."""
    return (
        select(LicenseRow.identifier, func.max(LicenseRow.version).label("version"))
        .group_by(LicenseRow.identifier)
        .subquery("newest_license")
    )


def _newest_cases() -> Any:
    return (
        select(CaseRow.case_number, func.max(CaseRow.version).label("version"))
        .group_by(CaseRow.case_number)
        .subquery("newest_case")
    )


def _signed() -> Any:
    """License versions carrying at least one seal or signature."""
    return select(SignatureRow.license_id).distinct().subquery("signed")


def _count(s: Session, stmt: Any) -> int:
    return int(s.scalar(stmt) or 0)


def _day(column: Any, dialect: str) -> Any:
    """The China Standard Time date of a timestamp column, as ``YYYY-MM-DD`` text."""
    if dialect == "postgresql":
        return func.to_char(func.timezone("Asia/Shanghai", column), "YYYY-MM-DD")
    return func.date(column, "+8 hours")  # SQLite keeps UTC wall time


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def type_name(code: str) -> str:
    entry = codelists.load("license_types").get(code)
    return entry.zh if entry else code


def reason_name(code: str) -> str:
    """The reason code's Chinese message (the code itself for a code the list lacks)."""
    entry = codelists.load("reason_codes").get(code)
    return entry.zh if entry else code


# --- the national evaluation indicators ------------------------------------------


def national(store: Store) -> tuple[Indicator, ...]:
    """The national evaluation indicators over the whole store."""
    newest = _newest_licenses()
    signed = _signed()
    newest_cases = _newest_cases()
    is_newest = and_(LicenseRow.identifier == newest.c.identifier,
                     LicenseRow.version == newest.c.version)  # fmt: skip
    with store.session() as s:
        licenses = _count(s, select(func.count()).select_from(newest))
        sealed = _count(
            s,
            select(func.count())
            .select_from(LicenseRow)
            .join(newest, is_newest)
            .join(signed, signed.c.license_id == LicenseRow.id),
        )
        related = LicenseRow.document["GLBJBH"].as_string()
        linked_licenses = _count(
            s,
            select(func.count())
            .select_from(LicenseRow)
            .join(newest, is_newest)
            .where(related.in_(select(CaseRow.case_number))),
        )  # fmt: skip
        per_type = (
            select(
                LicenseRow.type_code, func.count(func.distinct(LicenseRow.identifier)).label("n")
            )
            .group_by(LicenseRow.type_code)
            .subquery("per_type")
        )
        types = _count(s, select(func.count()).select_from(per_type))
        types_in_use = _count(
            s,
            select(func.count()).select_from(per_type).where(per_type.c.n > TYPES_IN_USE_THRESHOLD),
        )
        cases = _count(s, select(func.count()).select_from(newest_cases))
        ssbm = CaseRow.document["SSBM"].as_string()
        agency = CaseRow.document["SSJGDM"].as_string()
        item_name = CaseRow.document["SXMC"].as_string()
        linked_cases = _count(
            s,
            select(func.count())
            .select_from(CaseRow)
            .join(newest_cases, and_(CaseRow.case_number == newest_cases.c.case_number,
                                     CaseRow.version == newest_cases.c.version))
            .where(func.length(ssbm) == ITEM_CODE_LENGTH,
                   func.substr(ssbm, 1, USCC_LENGTH) == agency,
                   func.coalesce(item_name, "") != ""),
        )  # fmt: skip
        seals = _count(s, select(func.count()).select_from(SealRow))
        registered = _count(
            s, select(func.count()).select_from(SealRow).where(SealRow.registration_no.is_not(None))
        )
    catalogue = len(codelists.load("license_types"))
    return (
        Indicator("licenses_aggregated", "证照汇聚量", "count", licenses,
                  note_zh="按证照标识计，不重复计版本"),
        Indicator("licenses_sealed_share", "加盖电子印章或签名的证照占比", "share", sealed,
                  licenses, note_zh="最新版本已签章的证照 / 证照汇聚量"),
        Indicator("license_types_with_licenses", "已关联证照的证照类型数", "count", types,
                  note_zh=f"证照目录共 {catalogue} 类"),
        Indicator("license_types_over_threshold",
                  f"关联证照超过 {TYPES_IN_USE_THRESHOLD} 张的证照类型数", "count", types_in_use),
        Indicator("cases_aggregated", "办件汇聚量", "count", cases,
                  note_zh="按办件编号计，不重复计版本"),
        Indicator("cases_item_linked_share", "关联事项的办件占比", "share", linked_cases, cases,
                  note_zh="实施编码完整（31 位、以实施机构代码开头）且有事项名称的办件"),
        Indicator("licenses_case_linked_share", "关联办件的证照占比", "share", linked_licenses,
                  licenses, note_zh="最新版本的关联办件编号在枢纽已汇聚的办件中"),
        Indicator("seals_registered_share", "电子印章备案率", "share", registered, seals,
                  note_zh="已取得全国平台备案号的印章 / 印章总数"),
    )  # fmt: skip


# --- breakdowns --------------------------------------------------------------------


def _where(stmt: Any, f: Filters, at: Any) -> Any:
    """``stmt`` (joined to the sources table) restricted to the department and period."""
    if f.department:
        stmt = stmt.where(Source.department == f.department)
    return stmt.where(at >= f.since) if f.since is not None else stmt


def _license_scope(stmt: Any, f: Filters) -> Any:
    if f.department:
        stmt = stmt.where(Source.department == f.department)
    if f.license_type:
        stmt = stmt.where(LicenseRow.type_code == f.license_type)
    if f.since is not None:
        stmt = stmt.where(LicenseRow.created_at >= f.since)
    return stmt


def by_department(store: Store, f: Filters = Filters()) -> list[DepartmentStats]:
    """Per department: raw records extracted / normalized / quarantined, licenses
    (identifiers) and how many of them are sealed (newest version), case records."""
    newest, signed = _newest_licenses(), _signed()
    raw: dict[str, dict[str, int]] = {}
    with store.session() as s:
        stmt = (
            select(Source.department, RawRecord.state, func.count())
            .join(Source, Source.id == RawRecord.source_id)
            .group_by(Source.department, RawRecord.state)
        )
        for dept, state, n in s.execute(_where(stmt, f, RawRecord.extracted_at)):
            entry = raw.setdefault(str(dept), {})
            entry[state] = entry.get(state, 0) + int(n)
        lic_stmt = _license_scope(
            select(Source.department, func.count(), func.count(signed.c.license_id))
            .select_from(LicenseRow)
            .join(Source, Source.id == LicenseRow.source_id)
            .join(newest, and_(LicenseRow.identifier == newest.c.identifier,
                               LicenseRow.version == newest.c.version))
            .outerjoin(signed, signed.c.license_id == LicenseRow.id)
            .group_by(Source.department),
            f,
        )  # fmt: skip
        lic = {str(d): (int(n), int(k)) for d, n, k in s.execute(lic_stmt)}
        case_stmt = (
            select(Source.department, func.count(func.distinct(CaseRow.case_number)))
            .join(Source, Source.id == CaseRow.source_id)
            .group_by(Source.department)
        )
        cases = {str(d): int(n) for d, n in s.execute(_where(case_stmt, f, CaseRow.created_at))}
    out = []
    for dept in sorted(set(raw) | set(lic) | set(cases)):
        states = raw.get(dept, {})
        n_lic, n_sealed = lic.get(dept, (0, 0))
        out.append(DepartmentStats(dept, sum(states.values()), states.get("normalized", 0),
                                   states.get("quarantined", 0), n_lic, n_sealed,
                                   cases.get(dept, 0)))  # fmt: skip
    return out


def by_license_type(store: Store, f: Filters = Filters()) -> list[TypeStats]:
    """Per license type: licenses (identifiers, newest version) and how many are sealed."""
    newest, signed = _newest_licenses(), _signed()
    stmt = _license_scope(
        select(LicenseRow.type_code, func.count(), func.count(signed.c.license_id))
        .select_from(LicenseRow)
        .join(Source, Source.id == LicenseRow.source_id)
        .join(newest, and_(LicenseRow.identifier == newest.c.identifier,
                           LicenseRow.version == newest.c.version))
        .outerjoin(signed, signed.c.license_id == LicenseRow.id)
        .group_by(LicenseRow.type_code)
        .order_by(LicenseRow.type_code),
        f,
    )  # fmt: skip
    with store.session() as s:
        rows = s.execute(stmt).all()
    return [TypeStats(str(t), type_name(str(t)), int(n), int(k)) for t, n, k in rows]


def quarantine_reasons(store: Store, f: Filters = Filters()) -> list[ReasonStats]:
    """Quarantined raw records per reason code (every state: what was rejected), most first."""
    stmt = (
        select(QuarantineRow.reason_code, func.count(func.distinct(QuarantineRow.raw_id)))
        .join(Source, Source.id == QuarantineRow.source_id)
        .group_by(QuarantineRow.reason_code)
    )
    with store.session() as s:
        rows = s.execute(_where(stmt, f, QuarantineRow.created_at)).all()
    out = [ReasonStats(str(code), reason_name(str(code)), int(n)) for code, n in rows]
    return sorted(out, key=lambda r: (-r.records, r.reason_code))


def daily(store: Store, f: Filters = Filters()) -> list[DayStats]:
    """Per day (China Standard Time): records extracted and quarantined, license
    versions sealed, record versions delivered (any platform)."""
    days: dict[str, dict[str, int]] = {}
    with store.session() as s:
        dialect = s.get_bind().dialect.name

        def add(name: str, stmt: Any) -> None:
            for day, n in s.execute(stmt):
                if day:
                    days.setdefault(str(day), {})[name] = int(n)

        d = _day(RawRecord.extracted_at, dialect)
        raw = select(d, func.count()).join(Source, Source.id == RawRecord.source_id).group_by(d)
        d = _day(QuarantineRow.created_at, dialect)
        quar = (
            select(d, func.count(func.distinct(QuarantineRow.raw_id)))
            .join(Source, Source.id == QuarantineRow.source_id)
            .group_by(d)
        )
        add("extracted", _where(raw, f, RawRecord.extracted_at))
        add("quarantined", _where(quar, f, QuarantineRow.created_at))
        d = _day(SignatureRow.signed_at, dialect)
        sealed = (
            select(d, func.count(func.distinct(SignatureRow.license_id)))
            .join(LicenseRow, LicenseRow.id == SignatureRow.license_id)
            .join(Source, Source.id == LicenseRow.source_id)
            .group_by(d)
        )
        sealed = _license_scope(sealed, Filters(f.department, f.license_type))
        if f.since is not None:
            sealed = sealed.where(SignatureRow.signed_at >= f.since)
        add("sealed", sealed)
        d = _day(DeliveryRow.delivered_at, dialect)
        delivered = select(d, func.count()).where(DeliveryRow.state == "delivered").group_by(d)
        if f.department or f.license_type:
            delivered = _license_scope(
                delivered.join(LicenseRow, LicenseRow.id == DeliveryRow.license_id).join(
                    Source, Source.id == LicenseRow.source_id
                ),
                Filters(f.department, f.license_type),
            )
        if f.since is not None:
            delivered = delivered.where(DeliveryRow.delivered_at >= f.since)
        add("delivered", delivered)
    return [DayStats(day, **counts) for day, counts in sorted(days.items())]


def departments(store: Store) -> list[str]:
    with store.session() as s:
        return [
            str(d)
            for d in s.scalars(select(Source.department).distinct().order_by(Source.department))
        ]


def license_types(store: Store) -> list[tuple[str, str]]:
    """(code, Chinese name) of the license types the store holds."""
    with store.session() as s:
        codes = s.scalars(select(LicenseRow.type_code).distinct().order_by(LicenseRow.type_code))
        return [(str(c), type_name(str(c))) for c in codes]
