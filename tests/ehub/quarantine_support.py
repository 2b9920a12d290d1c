"""A hub store with quarantined records, written the way the normalize stage writes them
(one ``quarantine`` row per (raw record, reason code, field), raw state ``quarantined``,
a ``quarantined`` audit event per row)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ehub import codelists
from ehub.audit import Event, append
from ehub.quarantine import settle_retried
from ehub.store.db import Store, insert_ignore, utcnow
from ehub.store.models import QuarantineRow, RawRecord, Source

MR = "market_regulation.business_licenses"
MR_DEPT = "山东省市场监督管理局"
MR_FILES = "market_regulation.individual_files"
HOUSING = "housing.construction_permits"
HOUSING_DEPT = "山东省住房和城乡建设厅"

PERSON_ID = "370102199003071234"  # citizen-ID shaped (check char not verified here)
PHONE = "13812345678"


def company(key: str, **over: Any) -> dict[str, Any]:
    payload = {
        "ID": key,
        "TYSHXYDM": "91370212315285741L",
        "QYMC": "青岛鑫源农业科技有限公司",
        "FDDBR": "沈博静",
        "ZS": "山东省青岛市崂山区滨海路55号",
        "LXDH": PHONE,
        "CLRQ": "2007-01-14",
    }
    payload.update(over)
    return payload


def person(key: str, **over: Any) -> dict[str, Any]:
    payload = {
        "ID": key,
        "CZZTDMLXDM": "111",
        "QYMC": "王小明",
        "ZJHM": PERSON_ID,
        "ZS": "济南市历下区",
    }
    payload.update(over)
    return payload


def add_source(store: Store, source_id: str, department: str) -> None:
    with store.session() as s:
        s.add(
            Source(
                id=source_id,
                department=department,
                kind="sql",
                record_kind="license",
                created_at=utcnow(),
            )
        )


def reject_row(raw_id: int, source_id: str, key: str, code: str, field: str, value: str | None,
               payload: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    en, zh = codelists.reason_message(code)
    return {
        "raw_id": raw_id,
        "source_id": source_id,
        "source_key": key,
        "reason_code": code,
        "field": field,
        "message_zh": f"{field}：{zh}",
        "message_en": f"{field}: {en}",
        "value": value,
        "payload": payload,
        "state": "open",
        "created_at": utcnow(),
    }


def add_quarantined(
    store: Store,
    source_id: str,
    key: str,
    payload: dict[str, Any],
    errors: list[tuple[str, str, str | None]],
) -> int:
    """A raw record quarantined with ``errors`` (reason code, field, value); its raw id."""
    with store.session() as s:
        raw = RawRecord(
            source_id=source_id,
            source_key=key,
            source_version="1",
            payload=payload,
            payload_hash=f"{source_id}/{key}".ljust(64, "0")[:64],
            state="quarantined",
            extracted_at=utcnow(),
        )
        s.add(raw)
        s.flush()
        rows = [reject_row(raw.id, source_id, key, c, f, v, payload) for c, f, v in errors]
        insert_ignore(s, QuarantineRow.__table__, rows, ["raw_id", "reason_code", "field"])
        append(
            s,
            [
                Event(
                    "quarantined",
                    f"{source_id}/{key}",
                    None,
                    {"raw_id": raw.id, "reason": c, "field": f},
                )
                for c, f, _ in errors
            ],
        )
        return raw.id


def renormalize(store: Store, outcome: dict[int, list[tuple[str, str, str | None]]]) -> None:
    """What the normalize stage writes for pending raw records: ``outcome`` maps a raw id to
    the defects found this time (empty: it passed)."""
    with store.session() as s:
        raws = {r.id: r for r in s.query(RawRecord).filter(RawRecord.id.in_(outcome))}
        assert all(r.state == "pending" for r in raws.values())
        rejects = [
            reject_row(i, raws[i].source_id, raws[i].source_key, c, f, v, raws[i].payload)
            for i, errs in outcome.items()
            for c, f, v in errs
        ]
        insert_ignore(s, QuarantineRow.__table__, rejects, ["raw_id", "reason_code", "field"])
        settle_retried(s, list(outcome), rejects)
        for i, errs in outcome.items():
            raws[i].state = "quarantined" if errs else "normalized"


@dataclass(frozen=True)
class Seeded:
    """Raw ids of the seeded records."""

    uscc: int  # market regulation, company: E_USCC_CHECK on CZZTDM
    person: int  # market regulation, a person: E_CITIZEN_ID_CHECK + E_FIELD_TOO_LONG
    dates: int  # market regulation: E_DATE_INVALID twice (two fields) + E_USCC_CHECK on issuer
    formula: int  # market regulation files: a value that looks like a spreadsheet formula
    housing: int  # housing: E_DIVISION_UNKNOWN


def seed(store: Store) -> Seeded:
    store.migrate()
    add_source(store, MR, MR_DEPT)
    add_source(store, MR_FILES, MR_DEPT)
    add_source(store, HOUSING, HOUSING_DEPT)
    uscc = add_quarantined(
        store, MR, "1001", company("1001"), [("E_USCC_CHECK", "CZZTDM", "91370212315285741A")]
    )
    per = add_quarantined(
        store,
        MR,
        "1002",
        person("1002"),
        [
            ("E_CITIZEN_ID_CHECK", "CZZTDM", PERSON_ID),
            ("E_FIELD_TOO_LONG", "CZZT", "王小明" * 20),
        ],
    )
    dates = add_quarantined(
        store,
        MR,
        "1003",
        company("1003", CLRQ="2023-02-30"),
        [
            ("E_DATE_INVALID", "ZZYXQQSRQ", "2023-02-30"),
            ("E_DATE_INVALID", "ZZBFRQ", "2023-13-01"),
            ("E_USCC_CHECK", "ZZBFJGDM", "11370212MBGH6FC990"),
        ],
    )
    formula = add_quarantined(
        store,
        MR_FILES,
        "f-1",
        company("f-1", ZS="=HYPERLINK(1)"),
        [("E_ENCODING", "KZ_ZS", "=HYPERLINK(1)")],
    )
    housing = add_quarantined(
        store, HOUSING, "H-9", company("H-9"), [("E_DIVISION_UNKNOWN", "CZZTQHDM", "379999")]
    )
    return Seeded(uscc, per, dates, formula, housing)
