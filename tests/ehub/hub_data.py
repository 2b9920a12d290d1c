"""A hub store filled with generated operations data, for the hub API and dashboard tests.

Rows are written the way the stages leave them (raw records, quarantine with
reason codes, license and case versions, seals, signatures, delivery and feed
outboxes with receipts and publication times, offices, audit events), from a
seeded random generator: departments, license types, states, defects, days and
latencies vary with the seed. Nothing here computes an indicator: the tests do
that themselves from the rows.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ehub import codelists
from ehub.audit import Event, append
from ehub.offices import add_office
from ehub.store.db import Store
from ehub.store.models import (
    CaseRow,
    DeliveryRow,
    FeedMessageRow,
    LicenseRow,
    QuarantineRow,
    RawRecord,
    SealRow,
    SignatureRow,
    Source,
)

#: (source id, department, record kind, license type codes it issues)
SOURCES = (
    ("market_regulation.business_licenses", "山东省市场监督管理局", "license",
     ("11100000000013338W001", "11100000000013338W002")),
    ("housing.construction_permits", "山东省住房和城乡建设厅", "license",
     ("11100000000013338W004",)),
    ("acceptance.case_records", "山东省一窗受理系统", "case", ()),
)  # fmt: skip
COUNTIES = ("370102", "370203", "370602", "370902")
OFFICES = (
    ("370100-jn", "济南市行政审批服务局", "370100"),
    ("370600-yt", "烟台市行政审批服务局", "370600"),
)


@dataclass
class Generated:
    """What was generated (ids to ask the API about; never the expected figures)."""

    now: datetime
    license_ids: list[str] = field(default_factory=list)
    case_numbers: list[str] = field(default_factory=list)
    seal_codes: list[str] = field(default_factory=list)
    office_tokens: dict[str, str] = field(default_factory=dict)
    quarantined_raw_ids: list[int] = field(default_factory=list)


def _uscc(rng: random.Random) -> str:
    return (
        "11370"
        + "".join(rng.choices(string.digits, k=3))
        + "MB"
        + "".join(rng.choices(string.digits + "ABCDEFGHJKLMNPQRTUWXY", k=8))
    )


def _at(rng: random.Random, now: datetime, days: int) -> datetime:
    return now - timedelta(days=rng.randint(0, days - 1), seconds=rng.randint(0, 86_000))


def populate(store: Store, *, seed: int, count: int = 60, days: int = 10) -> Generated:
    """Write about ``count`` raw records per source spread over the last ``days`` days."""
    rng = random.Random(seed)
    now = datetime.now(UTC).replace(microsecond=0)
    gen = Generated(now)
    reasons = [e.code for e in codelists.load("reason_codes")]
    for code, name, division in OFFICES:
        _office, token = add_office(store, code, name, division, kinds=("license", "case"),
                                    fields={"license": ["*"], "case": ["*"]},
                                    include_children=True, delivery=("kafka", "pull"))  # fmt: skip
        gen.office_tokens[code] = token
    with store.session() as s:
        seals = []
        for n in range(3):
            seal = SealRow(
                code=f"seal-{seed}-{n}", department=SOURCES[n % 2][1], department_uscc=_uscc(rng),
                division="370000", name=f"电子证照专用章{n}", seal_type="license",
                license_types=[], cross_level=False, cert_pem="(generated)", key_ref="(none)",
                status="active", registration_no=f"BA{seed}{n:04d}" if n != 1 else None,
                registered_at=now if n != 1 else None, valid_from=now - timedelta(days=400),
                valid_until=now + timedelta(days=400), created_at=now - timedelta(days=30),
            )  # fmt: skip
            s.add(seal)
            seals.append(seal)
        s.flush()
        gen.seal_codes = [x.code for x in seals]
        events: list[Event] = []
        case_numbers: list[str] = []
        # case records first, so licenses can name them
        for sid, dept, kind, types in sorted(SOURCES, key=lambda x: x[2] != "case"):
            s.add(Source(id=sid, department=dept, kind="sql", record_kind=kind,
                         created_at=now - timedelta(days=days)))  # fmt: skip
            s.flush()
            for n in range(count + rng.randint(-10, 10)):
                extracted = _at(rng, now, days)
                state = rng.choices(["normalized", "quarantined", "pending"], [8, 2, 1])[0]
                raw = RawRecord(source_id=sid, source_key=f"K{n:05d}", source_version="1",
                                payload={"n": n}, payload_hash=f"{seed}-{sid}-{n}", state=state,
                                extracted_at=extracted)  # fmt: skip
                s.add(raw)
                s.flush()
                if state == "quarantined":
                    gen.quarantined_raw_ids.append(raw.id)
                    for reason in rng.sample(reasons, rng.choice((1, 1, 2))):
                        s.add(QuarantineRow(
                            raw_id=raw.id, source_id=sid, source_key=raw.source_key,
                            reason_code=reason, field="F", message_zh="生成的缺陷",
                            message_en="generated defect", value="x", payload={"n": n},
                            state=rng.choice(("open", "open", "retried")),
                            created_at=extracted + timedelta(seconds=5),
                        ))  # fmt: skip
                    continue
                if state != "normalized":
                    continue
                if kind == "case":
                    number = _case(s, rng, raw, sid, extracted)
                    case_numbers.append(number)
                    gen.case_numbers.append(number)
                else:
                    gen.license_ids.append(
                        _license(s, rng, raw, sid, types, extracted, seals, case_numbers, events)
                    )
        s.flush()
        _outboxes(s, rng, now)
        for back in range(1, min(days, 6)):
            day = (now - timedelta(days=back)).date().isoformat()
            for dest in ("provincial", "national"):
                missing, unknown = rng.choice((0, 0, 1, 3)), rng.choice((0, 0, 2))
                events.append(Event("reconciled", dest, None, {
                    "destination": dest, "day": day, "kind": "license",
                    "hub_count": 40 + back, "platform_count": 40 + back - missing + unknown,
                    "missing": missing, "unknown_to_hub": unknown, "matched": not (missing or unknown),
                }))  # fmt: skip
        append(s, events)
    return gen


def _case(s: Any, rng: random.Random, raw: RawRecord, sid: str, at: datetime) -> str:
    agency = _uscc(rng)
    county = rng.choice(COUNTIES)
    ssbm = agency + "1" + county + f"{rng.randint(1, 999):03d}000"
    quality = rng.choices(["ok", "short", "other_agency", "no_name"], [10, 1, 1, 1])[0]
    if quality == "short":
        ssbm = ssbm[:25]
    elif quality == "other_agency":
        ssbm = _uscc(rng) + ssbm[18:]
    number = ssbm[:31].ljust(31, "0") + at.strftime("%Y%m%d") + f"{raw.id:04d}"[-4:]
    doc = {"BJBH": number, "SSBM": ssbm, "SSJGDM": agency,
           "SXMC": "" if quality == "no_name" else "企业设立登记", "XZQHDM": county,
           "SQRLX": rng.choice(("0", "1")), "SQRMC": "张三丰", "SQRZJHM": "370102199001011234",
           "BJZT": "completed", "BJJG": "granted"}  # fmt: skip
    for version in range(1, rng.choice((1, 1, 1, 2)) + 1):
        s.add(CaseRow(case_number=number, version=version, division=county, content_hash="h",
                      document=dict(doc, BBH=version), source_id=sid, source_key=raw.source_key,
                      raw_id=raw.id, created_at=at + timedelta(seconds=version)))  # fmt: skip
    return number


def _license(
    s: Any, rng: random.Random, raw: RawRecord, sid: str, types: tuple[str, ...], at: datetime,
    seals: list[SealRow], case_numbers: list[str], events: list[Event],
) -> str:  # fmt: skip
    type_code = rng.choice(types)
    county = rng.choice(COUNTIES)
    ident = f"{type_code[-3:]}-{sid[:4]}-{raw.id:06d}"
    related = rng.choices(["case", "unknown", "none"], [5, 1, 2])[0]
    glbjbh = (rng.choice(case_numbers) if case_numbers and related == "case"
              else "3" * 43 if related == "unknown" else None)  # fmt: skip
    person = rng.random() < 0.3
    doc = {"ZZBS": ident, "ZZLXDM": type_code, "ZZBH": f"NO{raw.id}",
           "CZZT": "李四" if person else "某某有限公司",
           "CZZTDM": "370102198001011234" if person else _uscc(rng),
           "CZZTDMLXDM": "111" if person else "001", "CZZTQHDM": county, "GLBJBH": glbjbh}  # fmt: skip
    versions = rng.choice((1, 1, 1, 2))
    for version in range(1, versions + 1):
        # an older version was sealed; the newest is sealed, waiting or held
        state = "sealed" if version < versions else rng.choices(
            ["sealed", "normalized", "held"], [7, 2, 1])[0]  # fmt: skip
        created = at + timedelta(minutes=version)
        row = LicenseRow(identifier=ident, version=version, type_code=type_code,
                         issuer_code=_uscc(rng), holder_division=county, county=county,
                         status="valid", content_hash=f"h{version}", document=dict(doc),
                         source_id=sid, source_key=raw.source_key, raw_id=raw.id, state=state,
                         state_reason="no usable seal" if state == "held" else None,
                         created_at=created)  # fmt: skip
        s.add(row)
        s.flush()
        events.append(Event("normalized", ident, version, {"source": sid}))
        if state == "sealed":
            seal = rng.choice(seals)
            s.add(SignatureRow(license_id=row.id, seal_id=seal.id, format="pades",
                               level=rng.choice(("B-B", "B-T")), path=f"/nonexistent/{ident}.pdf",
                               sha256="0" * 64,
                               signed_at=created + timedelta(seconds=rng.randint(1, 600))))  # fmt: skip
            events.append(Event("sealed", ident, version, {"seal": seal.code}))
    return ident


def _outboxes(s: Any, rng: random.Random, now: datetime) -> None:
    """Delivery rows for sealed license versions and case versions, feed rows per office."""
    from sqlalchemy import select

    n = 0
    sealed = s.execute(
        select(LicenseRow.id, LicenseRow.identifier, LicenseRow.version, LicenseRow.created_at)
        .where(LicenseRow.state == "sealed")
    ).all()  # fmt: skip
    cases = s.execute(select(CaseRow.id, CaseRow.case_number, CaseRow.version,
                             CaseRow.created_at)).all()  # fmt: skip
    for kind, rows, dests in (("license", sealed, ("provincial", "national")),
                              ("case", cases, ("provincial",))):  # fmt: skip
        for rid, subject, version, created in rows:
            for dest in dests:
                n += 1
                state = rng.choices(["delivered", "pending", "rejected", "dead"], [12, 2, 1, 1])[0]
                made = created + timedelta(seconds=30)
                done = (
                    made + timedelta(seconds=rng.uniform(0.5, 900))
                    if state == "delivered"
                    else None
                )
                s.add(DeliveryRow(kind=kind, license_id=rid if kind == "license" else None,
                                  case_id=rid if kind == "case" else None, subject=subject,
                                  version=version, destination=dest, idempotency_key=f"k{n}",
                                  state=state, attempts=1, receipt_id=f"r{n}" if done else None,
                                  last_error="E: generated" if state in ("rejected", "dead") else None,
                                  created_at=made, delivered_at=done))  # fmt: skip
            for office, _name, _div in OFFICES:
                if rng.random() < 0.5:
                    continue
                n += 1
                published = rng.random() < 0.85
                s.add(FeedMessageRow(
                    kind=kind, license_id=rid if kind == "license" else None,
                    case_id=rid if kind == "case" else None, office=office,
                    topic=f"ehub.return.office.{office}", message_key=subject,
                    message_id=f"m{n}", state="published" if published else "pending",
                    partition=0 if published else None, offset=n if published else None,
                    created_at=created,
                    published_at=created + timedelta(seconds=rng.uniform(0.1, 120)) if published else None,
                ))  # fmt: skip
