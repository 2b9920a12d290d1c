"""ehub.quarantine: list / show / counts / retry, and how the normalize stage's
quarantine write settles retried records (open again or resolved)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from ehub import quarantine as q
from ehub.audit import verify_chain
from ehub.errors import ConfigError
from ehub.quarantine_masking import is_person_record, mask_payload, mask_value
from ehub.store.db import Store
from ehub.store.models import AuditEvent, QuarantineRow, RawRecord
from tests.ehub.quarantine_support import (
    HOUSING,
    HOUSING_DEPT,
    MR,
    MR_DEPT,
    MR_FILES,
    PERSON_ID,
    PHONE,
    Seeded,
    add_quarantined,
    company,
    renormalize,
    seed,
)


@pytest.fixture
def store(store_url: str) -> Store:
    return Store(store_url)


@pytest.fixture
def seeded(store: Store) -> Seeded:
    return seed(store)


def _raw_state(store: Store, raw_id: int) -> str:
    with store.session() as s:
        return s.get_one(RawRecord, raw_id).state


def _row_states(store: Store, raw_id: int) -> dict[tuple[str, str], str]:
    with store.session() as s:
        rows = s.execute(
            select(QuarantineRow.reason_code, QuarantineRow.field, QuarantineRow.state).where(
                QuarantineRow.raw_id == raw_id
            )
        )
        return {(c, f): st for c, f, st in rows}


# ---------------------------------------------------------------- list


def test_list_filters(store: Store, seeded: Seeded) -> None:
    def raws(**kw: object) -> list[int]:
        return [e.raw_id for e in q.list_entries(store, limit=100, **kw).entries]  # type: ignore[arg-type]

    assert len(raws()) == 8
    assert set(raws(source=HOUSING)) == {seeded.housing}
    assert set(raws(department=MR_DEPT)) == {
        seeded.uscc,
        seeded.person,
        seeded.dates,
        seeded.formula,
    }
    assert raws(department=HOUSING_DEPT, source=MR) == []
    assert raws(reason="E_USCC_CHECK") == [seeded.uscc, seeded.dates]
    assert raws(reason="E_DATE_INVALID") == [seeded.dates, seeded.dates]
    assert raws(state="retried") == []
    assert len(raws(state=None)) == 8
    assert len(raws(since=datetime.now(UTC) - timedelta(hours=1))) == 8
    assert raws(since=datetime.now(UTC) + timedelta(hours=1)) == []
    # a naive `since` is read as UTC
    assert len(raws(since=datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=1))) == 8

    entry = q.list_entries(store, source=HOUSING).entries[0]
    assert entry.department == HOUSING_DEPT and entry.source_key == "H-9"
    assert entry.reason_code == "E_DIVISION_UNKNOWN" and entry.field == "CZZTQHDM"
    assert entry.value == "379999" and entry.state == "open"
    assert entry.created_at.tzinfo is not None
    assert "GB/T 2260" in entry.fix_zh and entry.fix_en
    with pytest.raises(AttributeError):
        entry.state = "resolved"  # type: ignore[misc]


def test_list_pages_by_id_keyset(store: Store, seeded: Seeded) -> None:
    seen: list[int] = []
    after, pages = 0, 0
    while True:
        page = q.list_entries(store, after=after, limit=3)
        pages += 1
        seen += [e.id for e in page.entries]
        assert len(page.entries) <= 3
        if page.next_after is None:
            break
        after = page.next_after
    assert seen == sorted(seen) and len(set(seen)) == 8
    assert pages == 3
    assert [e.id for e in q.iter_entries(store, batch=2)] == seen


def test_bad_filters_are_config_errors(store: Store, seeded: Seeded) -> None:
    with pytest.raises(ConfigError, match="E_NOPE"):
        q.list_entries(store, reason="E_NOPE")
    with pytest.raises(ConfigError, match="state"):
        q.list_entries(store, state="closed")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        q.list_entries(store, limit=0)


# ---------------------------------------------------------------- masking


def test_values_are_masked_unless_revealed(store: Store, seeded: Seeded) -> None:
    masked = {(e.raw_id, e.field): e.value for e in q.list_entries(store, limit=100).entries}
    assert masked[(seeded.person, "CZZTDM")] == PERSON_ID[:6] + "********" + PERSON_ID[-4:]
    assert masked[(seeded.person, "CZZT")] == "王" + "*" * 59  # a person's name
    assert masked[(seeded.uscc, "CZZTDM")] == "91370212315285741A"  # a company's code stays
    revealed = {
        (e.raw_id, e.field): e.value for e in q.list_entries(store, limit=100, reveal=True).entries
    }
    assert revealed[(seeded.person, "CZZTDM")] == PERSON_ID


def test_masking_policy() -> None:
    assert mask_value("E_CITIZEN_ID_CHECK", "SQRZJHM", "11010519491231002X") == (
        "110105********002X"
    )
    assert mask_value("E_FIELD_TOO_LONG", "KZ_FDDBR", "欧阳娜娜") == "欧***"
    assert mask_value("E_FIELD_TOO_LONG", "CZZT", "欧阳娜娜") == "欧阳娜娜"
    assert mask_value("E_FIELD_TOO_LONG", "CZZT", "欧阳娜娜", person=True) == "欧***"
    assert mask_value("E_ENCODING", "KZ_ZS", f"联系 {PHONE} 或") == "联系 138****5678 或"
    assert mask_value("E_USCC_CHECK", "CZZTDM", "91370212315285741A") == "91370212315285741A"
    assert mask_value("E_DATE_INVALID", "ZZBFRQ", None) is None
    assert is_person_record({"CZZTDMLXDM": "111"})
    assert is_person_record({"ZJHM": PERSON_ID})
    assert not is_person_record(company("1"))
    payload = mask_payload(company("1", NOTE=[f"id {PERSON_ID}"], SUB={"FZR": "李四"}))
    assert payload["FDDBR"] == "沈**" and payload["LXDH"] == "138****5678"
    assert payload["NOTE"] == ["id 370102********1234"] and payload["SUB"] == {"FZR": "李*"}
    assert payload["TYSHXYDM"] == "91370212315285741L" and payload["ID"] == "1"


# ---------------------------------------------------------------- show


def test_show_gives_errors_source_payload_and_history(store: Store, seeded: Seeded) -> None:
    rec = q.show(store, seeded.dates)
    assert rec is not None
    assert (rec.source_id, rec.department, rec.source_key) == (MR, MR_DEPT, "1003")
    assert rec.state == "quarantined"
    assert [(e.reason_code, e.field) for e in rec.errors] == [
        ("E_DATE_INVALID", "ZZYXQQSRQ"),
        ("E_DATE_INVALID", "ZZBFRQ"),
        ("E_USCC_CHECK", "ZZBFJGDM"),
    ]
    assert rec.payload["FDDBR"] == "沈**" and rec.payload["CLRQ"] == "2023-02-30"
    assert [h.event for h in rec.history] == ["quarantined"] * 3
    assert {h.detail["field"] for h in rec.history} == {"ZZYXQQSRQ", "ZZBFRQ", "ZZBFJGDM"}
    revealed = q.show(store, seeded.dates, reveal=True)
    assert revealed is not None and revealed.payload["FDDBR"] == "沈博静"


def test_show_of_unknown_or_clean_records_is_none(store: Store, seeded: Seeded) -> None:
    assert q.show(store, 999_999) is None
    with store.session() as s:
        raw = s.get_one(RawRecord, seeded.uscc)
        clean = RawRecord(
            source_id=MR,
            source_key="ok",
            source_version="1",
            payload={},
            payload_hash="c" * 64,
            state="normalized",
            extracted_at=raw.extracted_at,
        )
        s.add(clean)
        s.flush()
        clean_id = clean.id
    assert q.show(store, clean_id) is None


# ---------------------------------------------------------------- counts


def test_counts_per_source_and_reason(store: Store, seeded: Seeded) -> None:
    got = {(c.source_id, c.reason_code): (c.records, c.rows) for c in q.counts(store)}
    assert got == {
        (HOUSING, "E_DIVISION_UNKNOWN"): (1, 1),
        (MR, "E_CITIZEN_ID_CHECK"): (1, 1),
        (MR, "E_DATE_INVALID"): (1, 2),
        (MR, "E_FIELD_TOO_LONG"): (1, 1),
        (MR, "E_USCC_CHECK"): (2, 2),
        (MR_FILES, "E_ENCODING"): (1, 1),
    }
    assert {c.department for c in q.counts(store, department=HOUSING_DEPT)} == {HOUSING_DEPT}
    assert q.counts(store, state="retried") == ()


# ---------------------------------------------------------------- retry


def test_retry_by_reason_hands_records_back_in_one_audited_transaction(
    store: Store, seeded: Seeded
) -> None:
    preview = q.retry(store, reason="E_USCC_CHECK", dry_run=True)
    assert (preview.records, preview.rows, preview.dry_run) == (2, 4, True)
    assert _raw_state(store, seeded.uscc) == "quarantined"  # a dry run changes nothing

    done = q.retry(store, reason="E_USCC_CHECK", actor="engineer")
    assert (done.records, done.rows) == (2, 4)
    for raw_id in (seeded.uscc, seeded.dates):
        assert _raw_state(store, raw_id) == "pending"
        assert set(_row_states(store, raw_id).values()) == {"retried"}  # every row of it
    assert _raw_state(store, seeded.person) == "quarantined"
    assert set(_row_states(store, seeded.person).values()) == {"open"}

    with store.session() as s:
        events = s.execute(
            select(AuditEvent.subject, AuditEvent.detail).where(
                AuditEvent.event == "quarantine_retried"
            )
        ).all()
        assert verify_chain(s) == []
    assert {subj for subj, _ in events} == {f"{MR}/1001", f"{MR}/1003"}
    detail = next(d for subj, d in events if subj.endswith("1003"))
    assert detail == {
        "raw_id": seeded.dates,
        "reasons": ["E_DATE_INVALID", "E_USCC_CHECK"],
        "by": "engineer",
    }
    history = q.show(store, seeded.dates)
    assert history is not None and history.history[-1].event == "quarantine_retried"

    again = q.retry(store, reason="E_USCC_CHECK")
    assert (again.records, again.rows) == (0, 0)  # nothing open is left to retry


def test_retry_by_ids_and_by_source(store: Store, seeded: Seeded) -> None:
    done = q.retry(store, raw_ids=[seeded.person, seeded.housing], source=MR)
    assert (done.records, done.rows) == (1, 2)  # the housing record is not of source MR
    assert _raw_state(store, seeded.person) == "pending"
    assert _raw_state(store, seeded.housing) == "quarantined"
    done = q.retry(store, source=HOUSING)
    assert done.records == 1 and _raw_state(store, seeded.housing) == "pending"
    with pytest.raises(ConfigError, match="name raw record ids"):
        q.retry(store)
    with pytest.raises(ConfigError, match="E_NOPE"):
        q.retry(store, reason="E_NOPE")


def test_retry_in_chunks(store: Store) -> None:
    seed(store)
    ids = [
        add_quarantined(
            store, MR, f"bulk-{i}", company(f"bulk-{i}"), [("E_CODE_UNKNOWN", "ZZZT", "9")]
        )
        for i in range(q._CHUNK + 7)
    ]
    done = q.retry(store, reason="E_CODE_UNKNOWN")
    assert (done.records, done.rows) == (len(ids), len(ids))
    with store.session() as s:
        states = set(s.scalars(select(RawRecord.state).where(RawRecord.id.in_(ids))))
        n_events = len(
            s.scalars(select(AuditEvent.id).where(AuditEvent.event == "quarantine_retried")).all()
        )
    assert states == {"pending"} and n_events == len(ids)


# ---------------------------------------------------------------- the normalize stage's write


def test_a_retried_record_that_fails_again_is_open_again(store: Store, seeded: Seeded) -> None:
    q.retry(store, raw_ids=[seeded.dates, seeded.uscc])
    # dates: the same two date defects again, but the issuer code is now accepted
    # (e.g. a code list was fixed); uscc: passes this time.
    renormalize(
        store,
        {
            seeded.dates: [
                ("E_DATE_INVALID", "ZZYXQQSRQ", "2023-02-30"),
                ("E_DATE_INVALID", "ZZBFRQ", "2023-13-01"),
            ],
            seeded.uscc: [],
        },
    )
    assert _row_states(store, seeded.dates) == {
        ("E_DATE_INVALID", "ZZYXQQSRQ"): "open",
        ("E_DATE_INVALID", "ZZBFRQ"): "open",
        ("E_USCC_CHECK", "ZZBFJGDM"): "resolved",
    }
    assert _row_states(store, seeded.uscc) == {("E_USCC_CHECK", "CZZTDM"): "resolved"}
    assert _raw_state(store, seeded.dates) == "quarantined"
    assert _raw_state(store, seeded.uscc) == "normalized"
    # it shows up again where engineers look, and can be retried again
    assert {e.raw_id for e in q.list_entries(store, reason="E_DATE_INVALID").entries} == {
        seeded.dates
    }
    assert {e.raw_id for e in q.list_entries(store, state="resolved").entries} == {
        seeded.dates,
        seeded.uscc,
    }
    assert q.retry(store, raw_ids=[seeded.dates]).rows == 2


def test_a_retried_record_with_a_new_defect_gets_a_new_open_row(
    store: Store, seeded: Seeded
) -> None:
    q.retry(store, raw_ids=[seeded.housing])
    renormalize(store, {seeded.housing: [("E_CODE_UNKNOWN", "ZZZT", "9")]})
    assert _row_states(store, seeded.housing) == {
        ("E_DIVISION_UNKNOWN", "CZZTQHDM"): "resolved",
        ("E_CODE_UNKNOWN", "ZZZT"): "open",
    }


def test_settle_retried_leaves_records_that_were_not_retried_alone(
    store: Store, seeded: Seeded
) -> None:
    with store.session() as s:
        q.settle_retried(s, [seeded.uscc, seeded.person], [])
        q.settle_retried(s, [], [])
    assert set(_row_states(store, seeded.uscc).values()) == {"open"}
    assert set(_row_states(store, seeded.person).values()) == {"open"}


def _mr_row(key: str, **over: str) -> dict[str, object]:
    """A T_SCJG_YYZZ row as the SQL connector reads it."""
    row: dict[str, object] = {
        "ID": int(key),
        "TYSHXYDM": "91370212315285741L",
        "QYMC": "青岛鑫源农业科技有限公司",
        "ZCH": f"37021231528{int(key):04d}",
        "FDDBR": "沈博静",
        "QYLX": "有限责任公司（自然人独资）",
        "ZCZB": "100万人民币",
        "ZS": "山东省青岛市崂山区滨海路55号",
        "JYFW": "农作物种植",
        "CLRQ": "2007-01-14",
        "YYQXZ": "2037-01-13",
        "DJJG": "青岛市崂山区市场监督管理局",
        "DJJGDM": "11370212MBGH6FC99U",
        "DJJGQHDM": "370212",
        "XZQHDM": "370212",
        "FZRQ": "20070114",
        "JLZT": "1",
        "GXSJ": "2024-01-01 08:00:03",
    }
    row.update(over)
    return row


def test_the_normalize_stage_reopens_or_resolves_retried_records(
    store: Store, tmp_path: Path
) -> None:
    from ehub.config import Settings
    from ehub.pipeline import normalize
    from ehub.pipeline.extract import ensure_source, payload_hash
    from ehub.sources.loader import default_sources_dir, load_spec

    spec = load_spec(default_sources_dir() / "market_regulation" / "business_licenses.yaml")
    store.migrate()
    ensure_source(store, spec)
    rows = {"1": _mr_row("1", JLZT="9"), "2": _mr_row("2", JLZT="9", FZRQ="20230230")}
    with store.session() as s:
        raws = [
            RawRecord(
                source_id=spec.id,
                source_key=key,
                source_version=str(row["GXSJ"]),
                payload=row,
                payload_hash=payload_hash(row),
                state="pending",
                extracted_at=datetime.now(UTC),
            )
            for key, row in rows.items()
        ]
        s.add_all(raws)
        s.flush()
        one, two = (r.id for r in raws)
    settings = Settings.from_env(
        home=tmp_path / "home", database_url=store.url, out_dir=tmp_path / "out"
    )
    assert normalize.run(settings, store, spec).counts["quarantined"] == 2
    assert _row_states(store, one) == {("E_CODE_UNKNOWN", "ZZZT"): "open"}
    assert _row_states(store, two) == {
        ("E_CODE_UNKNOWN", "ZZZT"): "open",
        ("E_DATE_INVALID", "ZZBFRQ"): "open",
    }

    # Unchanged spec: both fail again the same way, and show up as open again.
    assert q.retry(store, source=spec.id).records == 2
    normalize.run(settings, store, spec)
    assert set(_row_states(store, one).values()) == {"open"}
    assert set(_row_states(store, two).values()) == {"open"}
    assert _raw_state(store, one) == _raw_state(store, two) == "quarantined"

    # The data engineers map status 9 and retry: record 1 passes, record 2 keeps its bad date.
    fixed = spec.model_copy(
        update={"codelists": {**spec.codelists, "jlzt": {**spec.codelists["jlzt"], "9": "valid"}}}
    )
    assert q.retry(store, source=spec.id).records == 2
    result = normalize.run(settings, store, fixed)
    assert result.counts["normalized"] == 1 and result.counts["quarantined"] == 1
    assert _raw_state(store, one) == "normalized"
    assert _row_states(store, one) == {("E_CODE_UNKNOWN", "ZZZT"): "resolved"}
    assert _raw_state(store, two) == "quarantined"
    assert _row_states(store, two) == {
        ("E_CODE_UNKNOWN", "ZZZT"): "resolved",
        ("E_DATE_INVALID", "ZZBFRQ"): "open",
    }
