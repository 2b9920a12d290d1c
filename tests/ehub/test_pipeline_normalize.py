"""Extract and normalize stages on SQLite and PostgreSQL with a fake department source:
watermarks and connector commits, store-level rules (duplicates, version conflicts,
explicit versions, status transitions), one final state per raw record, idempotent re-runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, select

from connectors.source import SourceBatch, SourceRecord
from ehub import identifiers
from ehub.audit import verify_chain
from ehub.config import Settings
from ehub.errors import SourceUnavailable
from ehub.pipeline import extract, normalize
from ehub.sources.spec import SourceSpec, spec_from_dict
from ehub.store.db import Store
from ehub.store.models import (
    AuditEvent,
    CaseRow,
    DeliveryRow,
    LicenseRow,
    QuarantineRow,
    RawRecord,
    Watermark,
)

TYPE_CODE = "11100000000013338W001"
ISSUER = "11370800MB28559184"
HOLDER = "91370000163044841F"


class FakeSource:
    """A department source after connectors/source.py: batches of ``size`` records, the
    cursor is the number of records read; ``commit`` checks the store already holds the
    batch and its watermark."""

    name = "fake"

    def __init__(
        self,
        store: Store,
        spec: SourceSpec,
        records: list[tuple[str, dict[str, Any]]],
        *,
        size: int = 2,
        fail_after: int | None = None,
        lookups: dict[str, str] | None = None,
    ) -> None:
        self.store, self.spec, self.records, self.size = store, spec, records, size
        self.fail_after = fail_after
        self.table = lookups or {}
        self.read_from: list[str | None] = []
        self.commits: list[str] = []
        self.closed = 0

    def read(self, cursor: str | None) -> Iterator[SourceBatch]:
        self.read_from.append(cursor)
        start = int(cursor or 0)
        for n, i in enumerate(range(start, len(self.records), self.size)):
            if self.fail_after is not None and n == self.fail_after:
                raise SourceUnavailable(f"{self.spec.id}: connection reset")
            chunk = self.records[i : i + self.size]
            recs = [
                SourceRecord(key, f"v{i + j}", payload) for j, (key, payload) in enumerate(chunk)
            ]
            yield SourceBatch(recs, str(i + len(chunk)), {"first": i})

    def commit(self, batch: SourceBatch) -> None:
        # Only called once the batch and its watermark are committed to the hub store.
        with self.store.session() as s:
            wm = s.get(Watermark, self.spec.id)
            assert wm is not None and wm.cursor == batch.cursor
            keys = set(
                s.execute(
                    select(RawRecord.source_key).where(RawRecord.source_id == self.spec.id)
                ).scalars()
            )
        assert {r.key for r in batch.records} <= keys
        self.commits.append(batch.cursor)

    def close(self) -> None:
        self.closed += 1

    def lookup(self, table: str, key: str, value: str, keys: list[str]) -> dict[str, str]:
        return {k: self.table[k] for k in keys if k in self.table}


# --- specs and records ---------------------------------------------------------------

DEPT = {"code": "market_regulation", "name": "山东省市场监督管理局"}

LICENSE_MAPPING: dict[str, Any] = {
    "ZZBH": {"from": "ZCH"},
    "ZZBFJG": {"from": "DJJG"},
    "ZZBFJGDM": {"from": "DJJGDM"},
    "ZZBFRQ": {"from": "FZRQ", "date": ["%Y-%m-%d"]},
    "CZZT": {"from": "QYMC"},
    "CZZTDM": {"from": "TYSHXYDM"},
    "CZZTDMLXDM": {"const": "001"},
    "CZZTQHDM": {"from": "XZQHDM"},
    "ZZZT": {"from": "JLZT", "codelist": "jlzt"},
    "KZ_ZS": {"from": "ZS"},
}


def license_spec(**over: Any) -> SourceSpec:
    return spec_from_dict(
        {
            "department": DEPT,
            "source": "licenses",
            "kind": "sql",
            "connection": "c",
            "record_kind": "license",
            "license_type": "营业执照",
            "key": "ID",
            "cursor": {"field": "GXSJ"},
            "sql": {"table": "T"},
            "codelists": {"jlzt": {"1": "valid", "2": "revoked", "3": "cancelled"}},
            "mapping": LICENSE_MAPPING,
            **over,
        }
    )


def lic(key: str, number: str = "N1", **over: Any) -> tuple[str, dict[str, Any]]:
    payload = {
        "ID": key,
        "GXSJ": "2024-01-01 08:00:00",
        "ZCH": number,
        "DJJG": "济南市市场监督管理局",
        "DJJGDM": ISSUER,
        "FZRQ": "2023-05-06",
        "QYMC": f"济南{number}有限公司",
        "TYSHXYDM": HOLDER,
        "XZQHDM": "370102",
        "JLZT": "1",
        "ZS": "济南市历下区经十路55号",
    }
    payload.update(over)
    return key, payload


def identifier_of(number: str) -> str:
    serial = identifiers.serial_from_key(f"{TYPE_CODE}|{ISSUER}|{number}")
    return identifiers.make_license_identifier(TYPE_CODE, ISSUER, serial)


# An event source: explicit identifier (ZZBS) and version (BBH), one key per event.
EVENT_MAPPING: dict[str, Any] = {
    **LICENSE_MAPPING,
    "ZZBS": {"from": "license.zzbs"},
    "BBH": {"from": "license.bbh", "integer": True},
    "ZZBH": {"from": "license.zzbh"},
    "ZZZT": {"from": "license.zt", "codelist": "zt"},
    "KZ_ZS": {"from": "license.dz"},
}


def event_spec() -> SourceSpec:
    return spec_from_dict(
        {
            "department": {"code": "transport", "name": "山东省交通运输厅"},
            "source": "permit_events",
            "kind": "kafka",
            "connection": "c",
            "record_kind": "license",
            "license_type": "道路运输经营许可证",
            "key": "eventId",
            "kafka": {"topic": "permits"},
            "contract": {"unknown_fields": "drop"},
            "codelists": {
                "zt": {"10": "valid", "20": "revoked", "30": "cancelled", "40": "suspended"}
            },
            "mapping": EVENT_MAPPING,
        }
    )


def permit_id(serial: str) -> str:
    return identifiers.make_license_identifier("11100000000013338W006", ISSUER, serial)


def event(
    event_id: str, serial: str, bbh: int, zt: str = "10", dz: str = "济南市"
) -> tuple[str, dict[str, Any]]:
    _, base = lic(event_id, number=f"P-{serial}")
    license = {"zzbs": permit_id(serial), "bbh": bbh, "zzbh": f"P-{serial}", "zt": zt, "dz": dz}
    return event_id, {**base, "eventId": event_id, "license": license}


CASE_MAPPING: dict[str, Any] = {
    "BJBH": {"from": "BJBH"},
    "SSBM": {"from": "SSBM"},
    "SXMC": {"from": "SXMC"},
    "SSJG": {"from": "SSJG"},
    "SSJGDM": {"from": "SSJGDM"},
    "XZQHDM": {"from": "XZQHDM"},
    "BJLX": {"const": "1"},
    "SQRLX": {"const": "1"},
    "SQRMC": {"from": "SQRMC"},
    "SQRZJHM": {"from": "SQRZJHM"},
    "SQRZJLX": {"const": "001"},
    "SBQD": {"from": "SBQD"},
    "BJZT": {"from": "BJZT"},
    "SBSJ": {"from": "SBSJ", "datetime": ["%Y-%m-%d %H:%M:%S"]},
    "BBH": {"from": "BBH", "integer": True},
}


def case_spec() -> SourceSpec:
    return spec_from_dict(
        {
            "department": {"code": "housing", "name": "山东省住房和城乡建设厅"},
            "source": "cases",
            "kind": "sql",
            "connection": "c",
            "record_kind": "case",
            "key": "ID",
            "cursor": {"field": "GXSJ"},
            "sql": {"table": "T_BJ"},
            "mapping": CASE_MAPPING,
        }
    )


def case(key: str, number: str, **over: Any) -> tuple[str, dict[str, Any]]:
    payload = {
        "ID": key,
        "GXSJ": "2024-01-01 08:00:00",
        "BJBH": number,
        "SSBM": "XK-001",
        "SXMC": "建筑工程施工许可证核发",
        "SSJG": "济南市住房和城乡建设局",
        "SSJGDM": ISSUER,
        "XZQHDM": "370102",
        "SQRMC": "济南鑫源建设有限公司",
        "SQRZJHM": HOLDER,
        "SBQD": "pc",
        "BJZT": "submitted",
        "SBSJ": "2024-01-02 09:00:00",
        "BBH": "",
    }
    payload.update(over)
    return key, payload


# --- helpers -----------------------------------------------------------------------------


@pytest.fixture
def env(tmp_path: Path, store_url: str) -> Iterator[tuple[Settings, Store]]:
    settings = Settings.from_env(home=tmp_path, database_url=store_url, batch_size=3)
    store = Store(store_url)
    store.migrate()
    try:
        yield settings, store
    finally:
        store.dispose()


def ingest(
    env: tuple[Settings, Store], spec: SourceSpec, records: list[tuple[str, dict[str, Any]]]
) -> FakeSource:
    settings, store = env
    src = FakeSource(store, spec, records)
    extract.run(settings, store, spec, source=src)
    return src


def quarantined(store: Store, spec: SourceSpec) -> list[tuple[str, str, str]]:
    with store.session() as s:
        rows = s.execute(
            select(QuarantineRow.source_key, QuarantineRow.reason_code, QuarantineRow.field)
            .where(QuarantineRow.source_id == spec.id)
            .order_by(QuarantineRow.id)
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


def states(store: Store, spec: SourceSpec) -> dict[str, str]:
    with store.session() as s:
        rows = s.execute(
            select(RawRecord.id, RawRecord.state)
            .where(RawRecord.source_id == spec.id)
            .order_by(RawRecord.id)
        )
        return {str(i): st for i, st in rows}


def license_versions(store: Store) -> list[tuple[str, str, int, str]]:
    with store.session() as s:
        rows = s.execute(
            select(
                LicenseRow.source_key, LicenseRow.identifier, LicenseRow.version, LicenseRow.status
            ).order_by(LicenseRow.id)
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


def assert_settled(store: Store, spec: SourceSpec) -> None:
    """Every raw record ended normalized or quarantined; quarantined ones have a reason."""
    with store.session() as s:
        raws = dict(
            s.execute(
                select(RawRecord.id, RawRecord.state).where(RawRecord.source_id == spec.id)
            ).all()
        )
        with_reason = set(s.execute(select(QuarantineRow.raw_id)).scalars())
        assert verify_chain(s) == []
    assert raws and set(raws.values()) <= {"normalized", "quarantined"}
    assert {i for i, st in raws.items() if st == "quarantined"} == with_reason


# --- extract ----------------------------------------------------------------------------


def test_extract_commits_the_connector_only_after_the_store(
    env: tuple[Settings, Store],
) -> None:
    settings, store = env
    spec = license_spec()
    records = [lic(f"k{i}", f"N{i}") for i in range(5)]
    src = ingest(env, spec, records)
    assert src.read_from == [None]
    assert src.commits == ["2", "4", "5"] and src.closed == 1
    assert extract.watermark(store, spec.id) == "5"
    assert len(states(store, spec)) == 5
    # Next run resumes after the watermark: nothing new, nothing committed.
    again = FakeSource(store, spec, records)
    result = extract.run(settings, store, spec, source=again)
    assert again.read_from == ["5"] and again.commits == [] and again.closed == 1
    assert result.counts == {"read": 0, "new": 0}
    with store.session() as s:
        events = s.execute(select(AuditEvent.detail).where(AuditEvent.event == "extracted"))
        assert [d["cursor"] for d in events.scalars()] == ["2", "4", "5"]


def test_a_record_read_twice_is_stored_once(env: tuple[Settings, Store]) -> None:
    settings, store = env
    spec = license_spec()
    records = [lic("k1", "N1"), lic("k2", "N2")]
    ingest(env, spec, records)
    with store.session() as s:
        s.execute(delete(Watermark))  # as if the commit of the watermark was lost
    src = FakeSource(store, spec, [*records, lic("k3", "N3")])
    result = extract.run(settings, store, spec, source=src)
    assert result.counts == {"read": 3, "new": 1}
    assert len(states(store, spec)) == 3


def test_a_failing_source_keeps_the_last_committed_watermark(
    env: tuple[Settings, Store],
) -> None:
    settings, store = env
    spec = license_spec()
    src = FakeSource(store, spec, [lic(f"k{i}", f"N{i}") for i in range(6)], fail_after=2)
    with pytest.raises(SourceUnavailable):
        extract.run(settings, store, spec, source=src)
    assert src.commits == ["2", "4"] and src.closed == 1
    assert extract.watermark(store, spec.id) == "4"
    src = FakeSource(store, spec, [lic(f"k{i}", f"N{i}") for i in range(6)])
    extract.run(settings, store, spec, source=src)
    assert src.read_from == ["4"] and extract.watermark(store, spec.id) == "6"
    assert len(states(store, spec)) == 6


def test_lookups_are_resolved_at_extract_and_kept_in_the_payload(
    env: tuple[Settings, Store],
) -> None:
    settings, store = env
    lookup = {"from": "DJJGID", "lookup": {"table": "T_ORG", "key": "ID", "value": "MC"}}
    spec = license_spec(mapping={**LICENSE_MAPPING, "ZZBFJG": lookup})
    records = [lic("k1", "N1", DJJGID="O1"), lic("k2", "N2", DJJGID="O9")]
    for _, payload in records:
        del payload["DJJG"]
    src = FakeSource(store, spec, records, lookups={"O1": "济南市市场监督管理局"})
    extract.run(settings, store, spec, source=src)
    with store.session() as s:
        payloads = s.execute(select(RawRecord.payload).order_by(RawRecord.id)).scalars().all()
    assert payloads[0]["_lookups"] == {"ZZBFJG": "济南市市场监督管理局"}
    assert "_lookups" not in payloads[1]
    normalize.run(settings, store, spec)
    assert quarantined(store, spec) == [("k2", "E_CODE_UNKNOWN", "ZZBFJG")]
    with store.session() as s:
        doc = s.execute(select(LicenseRow.document)).scalar_one()
    assert doc["ZZBFJG"] == "济南市市场监督管理局"


# --- normalize: licenses without explicit versions ----------------------------------------


def test_duplicates_conflicts_and_new_versions(env: tuple[Settings, Store]) -> None:
    settings, store = env
    spec = license_spec()
    records = [
        lic("k1", "N1"),  # original
        lic("k2", "N1"),  # another key, same license, same content → duplicate
        lic("k3", "N1", ZS="青岛市崂山区"),  # another key, same license, other content → conflict
        lic("k4", "N4"),
        lic("k5", "N5", XZQHDM="379999"),  # a field defect
        lic("k1", "N1", GXSJ="2024-02-01", ZS="济南市市中区"),  # same key, changed → version 2
        lic("k4", "N4", GXSJ="2024-02-01"),  # same key, only the cursor changed → nothing new
    ]
    ingest(env, spec, records)
    result = normalize.run(settings, store, spec)
    assert result.batches == 3  # batch_size 3
    assert result.counts == {"normalized": 4, "quarantined": 3, "new_versions": 3}
    assert quarantined(store, spec) == [
        ("k2", "E_DUPLICATE", "ZZBH"),
        ("k3", "E_VERSION_CONFLICT", "ZZBH"),
        ("k5", "E_DIVISION_UNKNOWN", "CZZTQHDM"),
    ]
    n1, n4 = identifier_of("N1"), identifier_of("N4")
    assert license_versions(store) == [
        ("k1", n1, 1, "valid"),
        ("k4", n4, 1, "valid"),
        ("k1", n1, 2, "valid"),
    ]
    assert_settled(store, spec)
    with store.session() as s:
        q = s.execute(
            select(QuarantineRow).where(QuarantineRow.reason_code == "E_DUPLICATE")
        ).scalar_one()
        assert q.value == n1 and "k1" in q.message_en and q.payload["ID"] == "k2"
        assert q.state == "open"
        events = s.execute(select(AuditEvent.event, AuditEvent.subject)).all()
    assert ("normalized", n1) in events
    assert ("quarantined", f"{spec.id}/k2") in events

    # Re-running is a no-op; re-extracting unchanged records adds nothing.
    assert normalize.run(settings, store, spec).counts == {
        "normalized": 0,
        "quarantined": 0,
        "new_versions": 0,
    }
    src = FakeSource(store, spec, records)
    with store.session() as s:
        s.execute(delete(Watermark))
    assert extract.run(settings, store, spec, source=src).counts["new"] == 0
    assert normalize.run(settings, store, spec).batches == 0
    assert len(license_versions(store)) == 3


def test_a_duplicate_within_one_batch_and_of_a_later_version(env: tuple[Settings, Store]) -> None:
    settings, store = env
    spec = license_spec()
    records = [lic("a", "N1"), lic("b", "N1")]  # one batch
    ingest(env, spec, records)
    normalize.run(settings, store, spec)
    assert quarantined(store, spec) == [("b", "E_DUPLICATE", "ZZBH")]
    # The original changes; a copy of its new content under another key is a duplicate,
    # a copy of its old content a conflict.
    records += [lic("a", "N1", ZS="新地址"), lic("c", "N1", ZS="新地址"), lic("d", "N1")]
    assert ingest(env, spec, records).read_from == ["2"]
    normalize.run(settings, store, spec)
    assert quarantined(store, spec)[1:] == [
        ("c", "E_DUPLICATE", "ZZBH"),
        ("d", "E_VERSION_CONFLICT", "ZZBH"),
    ]
    assert [v[2] for v in license_versions(store)] == [1, 2]


def test_revoked_license_cannot_become_valid_again(env: tuple[Settings, Store]) -> None:
    settings, store = env
    spec = license_spec()
    ingest(
        env,
        spec,
        [
            lic("k1", "N1"),
            lic("k1", "N1", GXSJ="2", JLZT="2"),  # revoked: version 2
            lic("k1", "N1", GXSJ="3", JLZT="1"),  # valid again
            lic("k2", "N2", JLZT="3"),  # cancelled
            lic("k2", "N2", GXSJ="2", JLZT="1", ZS="x"),
        ],
    )
    normalize.run(settings, store, spec)
    assert quarantined(store, spec) == [
        ("k1", "E_STATUS_TRANSITION", "ZZZT"),
        ("k2", "E_STATUS_TRANSITION", "ZZZT"),
    ]
    assert [(v[0], v[2], v[3]) for v in license_versions(store)] == [
        ("k1", 1, "valid"),
        ("k1", 2, "revoked"),
        ("k2", 1, "cancelled"),
    ]
    assert_settled(store, spec)


# --- normalize: explicit identifiers and versions (event sources) ---------------------------


def test_explicit_versions(env: tuple[Settings, Store]) -> None:
    settings, store = env
    spec = event_spec()
    events = [
        event("e1", "A", 1),
        event("e2", "A", 2, dz="青岛市"),
        event("e3", "A", 2, dz="烟台市"),  # same identifier + version, other content
        event("e4", "A", 1),  # an old version again, same content: nothing new
        event("e5", "B", 3),
        event("e6", "B", 2),  # lower version after a higher one
        event("e7", "C", 1),
        event("e8", "C", 2, zt="20"),  # revoked
        event("e9", "C", 3, zt="10", dz="威海市"),  # valid again with a higher version
        event("e10", "D", 1, zt="30"),  # cancelled
        event("e11", "D", 2, zt="40"),  # suspended: also live
        event("e12", "A", 2, dz="青岛市"),  # a re-sent event: nothing new
        event("e13", "A", 3, zt="20"),  # revoked at last: fine
    ]
    ingest(env, spec, events)
    result = normalize.run(settings, store, spec)
    assert quarantined(store, spec) == [
        ("e3", "E_VERSION_CONFLICT", "BBH"),
        ("e6", "E_VERSION_CONFLICT", "BBH"),
        ("e9", "E_STATUS_TRANSITION", "ZZZT"),
        ("e11", "E_STATUS_TRANSITION", "ZZZT"),
    ]
    assert result.counts == {"normalized": 9, "quarantined": 4, "new_versions": 7}
    assert [(i, v, st) for _, i, v, st in license_versions(store)] == [
        (permit_id("A"), 1, "valid"),
        (permit_id("A"), 2, "valid"),
        (permit_id("B"), 3, "valid"),
        (permit_id("C"), 1, "valid"),
        (permit_id("C"), 2, "revoked"),
        (permit_id("D"), 1, "cancelled"),
        (permit_id("A"), 3, "revoked"),
    ]
    assert_settled(store, spec)
    with store.session() as s:
        msg = s.execute(
            select(QuarantineRow.message_en).where(QuarantineRow.source_key == "e6")
        ).scalar_one()
    assert "version 2 arrives after version 3" in msg


def test_fields_dropped_are_audited(env: tuple[Settings, Store]) -> None:
    settings, store = env
    spec = event_spec()  # contract: unknown_fields drop
    ingest(env, spec, [event("e1", "A", 1), event("e2", "B", 1), event("e3", "C", 1)])
    with store.session() as s:
        assert (
            s.execute(select(func.count()).where(AuditEvent.event == "fields_dropped")).scalar()
            == 0
        )
    normalize.run(settings, store, spec)
    with store.session() as s:
        dropped = s.execute(
            select(AuditEvent.subject, AuditEvent.detail).where(
                AuditEvent.event == "fields_dropped"
            )
        ).all()
    # event payloads carry the flat license columns too; the mapping reads license.*
    assert len(dropped) == 1 and dropped[0][0] == spec.id
    assert dropped[0][1]["ZCH"] == 3 and dropped[0][1]["JLZT"] == 3
    assert "license" not in dropped[0][1] and "eventId" not in dropped[0][1]
    assert quarantined(store, spec) == []


def test_undecodable_messages_are_quarantined_once(env: tuple[Settings, Store]) -> None:
    settings, store = env
    spec = event_spec()
    garbage = ("garbage-1", {"__error__": "not JSON", "__raw__": "\\xff"})
    ingest(env, spec, [event("e1", "A", 1), garbage])
    normalize.run(settings, store, spec)
    assert quarantined(store, spec) == [("garbage-1", "E_VALUE_INVALID", "payload")]
    assert_settled(store, spec)


def test_long_source_keys_are_quarantined(env: tuple[Settings, Store]) -> None:
    settings, store = env
    spec = license_spec()
    key = "file-" + "x" * 195
    ingest(env, spec, [lic(key, "N1", XZQHDM="379999")])
    normalize.run(settings, store, spec)
    assert quarantined(store, spec) == [(key, "E_DIVISION_UNKNOWN", "CZZTQHDM")]
    assert_settled(store, spec)


# --- normalize: case records ------------------------------------------------------------


def case_versions(store: Store) -> list[tuple[str, str, int, str]]:
    with store.session() as s:
        rows = s.execute(
            select(
                CaseRow.source_key, CaseRow.case_number, CaseRow.version, CaseRow.division
            ).order_by(CaseRow.id)
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


def test_case_records_keyed_by_case_number(env: tuple[Settings, Store]) -> None:
    settings, store = env
    spec = case_spec()
    records = [
        case("r1", "BJ-1"),
        case("r2", "BJ-1"),  # another key, same case, same content
        case("r3", "BJ-1", SBQD="mobile"),  # another key, same case, other content
        case("r1", "BJ-1", GXSJ="2", BJZT="accepted"),  # same key, changed
        case("r4", "BJ-4", XZQHDM="370199"),
        case("r5", "BJ-5", BBH="1"),
        case("r6", "BJ-5", BBH="1", BJZT="accepted"),  # same case + version, other content
        case("r7", "BJ-5", BBH="3", BJZT="completed"),
        case("r8", "BJ-5", BBH="2", BJZT="accepted"),  # lower version after a higher one
        case("r9", "BJ-5", BBH="3", BJZT="completed"),  # same version, same content
    ]
    ingest(env, spec, records)
    normalize.run(settings, store, spec)
    assert quarantined(store, spec) == [
        ("r2", "E_DUPLICATE", "BJBH"),
        ("r3", "E_VERSION_CONFLICT", "BJBH"),
        ("r4", "E_DIVISION_UNKNOWN", "XZQHDM"),
        ("r6", "E_VERSION_CONFLICT", "BBH"),
        ("r8", "E_VERSION_CONFLICT", "BBH"),
    ]
    assert [(k, n, v) for k, n, v, _ in case_versions(store)] == [
        ("r1", "BJ-1", 1),
        ("r1", "BJ-1", 2),
        ("r5", "BJ-5", 1),
        ("r7", "BJ-5", 3),
    ]
    with store.session() as s:
        docs = s.execute(select(CaseRow.document).order_by(CaseRow.id)).scalars().all()
    assert [d["BJZT"] for d in docs] == ["submitted", "accepted", "submitted", "completed"]
    # every stored version is in the outbox of both platforms, written with it
    with store.session() as s:
        outbox_rows = s.execute(
            select(DeliveryRow.destination, DeliveryRow.kind, DeliveryRow.subject,
                   DeliveryRow.version, DeliveryRow.case_id, DeliveryRow.state)
        ).all()  # fmt: skip
    expected = [(d, "case", n, v) for _, n, v, _ in case_versions(store)
                for d in ("provincial", "national")]  # fmt: skip
    assert sorted(r[:4] for r in outbox_rows) == sorted(expected)
    assert all(r.case_id and r.state == "pending" for r in outbox_rows)
    assert_settled(store, spec)
    assert normalize.run(settings, store, spec).batches == 0
