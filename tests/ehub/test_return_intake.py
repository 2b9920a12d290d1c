"""The provincial platform's return interface (属地返还) → the offices' feeds.

Other departments' license and case versions, handed back by the strict provincial
simulator, reach exactly the offices of their jurisdiction (the same rule, fields
and masking as the hub's own records); the hub's own versions are not returned
twice; an unroutable division is reported; a malformed item is quarantined with
its field; the cursor makes a re-run read nothing, and a re-read page changes
nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from connectors.platform import ReturnPage
from ehub.config import Settings
from ehub.offices import add_office, revoke
from ehub.pipeline import publish, returns
from ehub.routing import view_for
from ehub.store.db import Store, utcnow
from ehub.store.models import (
    AuditEvent,
    FeedMessageRow,
    LicenseRow,
    QuarantineRow,
    ReturnCursor,
    ReturnedRecord,
)
from ehub.store.models import Source as SourceRow
from simulators.provincial import create_app
from tests.ehub.test_office_feeds import _read_topics
from tests.ehub.test_pipeline_deliver import _client
from tests.ehub.test_routing import OFFICES, expected, generate


@dataclass
class Env:
    settings: Settings
    store: Store
    platform: TestClient


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    settings = replace(
        Settings.from_env(home=tmp_path / "home", out_dir=tmp_path / "out",
                          database_url=f"sqlite:///{tmp_path / 'hub.db'}"),
        return_topic_prefix=f"test.{tmp_path.name[-12:].lower()}.",
    )  # fmt: skip
    store = Store(settings.database_url)
    store.migrate()
    for o in OFFICES:
        add_office(store, o.code, o.name, o.division, kinds=o.kinds, fields=o.fields,
                   license_types=o.license_types, include_children=o.include_children,
                   masking=o.masking, delivery=("kafka",))  # fmt: skip
        if not o.active:
            revoke(store, o.code)
    with TestClient(create_app(tmp_path / "platform", token="dev-provincial-token")) as platform:
        yield Env(settings, store, platform)
    store.dispose()


def _seed(platform: TestClient, records: list[tuple[str, dict[str, Any]]]) -> None:
    items = [{"kind": k, "record": d} for k, d in records]
    r = platform.post("/admin/return/records", json={"items": items})
    assert r.status_code == 200 and r.json()["stored"] == len(items), r.text


def _hub_owns(store: Store, records: list[tuple[str, dict[str, Any]]]) -> None:
    """Some licenses are the hub's own (it delivered them): the interface lists them too."""
    with store.session() as s:
        s.add(SourceRow(id="t.licenses", department="t", kind="sql", record_kind="license",
                        created_at=utcnow()))  # fmt: skip
        s.flush()
        for n, (_, doc) in enumerate(records):
            s.add(LicenseRow(
                identifier=doc["ZZBS"], version=1, type_code=doc["ZZLXDM"],
                issuer_code=doc["ZZBFJGDM"], holder_division=doc["CZZTQHDM"],
                county=doc["CZZTQHDM"][:6], status="valid", content_hash="h", document=doc,
                source_id="t.licenses", source_key=str(n), raw_id=None, state="sealed",
                created_at=utcnow()))  # fmt: skip


def _count(store: Store, model: Any) -> int:
    with store.session() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def test_other_departments_records_reach_exactly_their_offices(env: Env) -> None:
    records = generate(120, seed=11)
    own = [r for r in records if r[0] == "license"][:20]
    others = [r for r in records if r not in own]
    lic = next(d for k, d in others if k == "license")
    bad = dict(lic, ZZBS=lic["ZZBS"][:-1] + "9", CZZTQHDM="379999")
    _hub_owns(env.store, own)
    _seed(env.platform, [*records, ("license", bad)])
    client = _client(env.platform)
    result = returns.run(env.settings, env.store, client=client, limit=25)
    assert result.counts["read"] == len(records) + 1
    assert result.counts["own"] == len(own)
    assert result.counts["returned"] == len(others) + 1  # the unroutable one is kept too
    assert result.counts["unroutable"] == 1 and result.counts["malformed"] == 0
    with env.store.session() as s:
        rows = s.execute(
            select(FeedMessageRow.office, ReturnedRecord.identifier)
            .join(ReturnedRecord, ReturnedRecord.id == FeedMessageRow.returned_id)
        ).all()  # fmt: skip
        events = s.execute(select(AuditEvent.subject, AuditEvent.detail)
                           .where(AuditEvent.event == "unroutable")).all()  # fmt: skip
        kept_bad = s.scalars(select(ReturnedRecord).where(ReturnedRecord.identifier == bad["ZZBS"]))
        assert kept_bad.one().division is None
    assert [(e[0], e[1]["field"]) for e in events] == [(bad["ZZBS"], "CZZTQHDM")]
    got: dict[str, set[str]] = {}
    for office, ident in rows:
        got.setdefault(office, set()).add(ident)
    for office in OFFICES:
        want = {d.get("ZZBS") or d["BJBH"] for k, d in others if expected(office, k, d)}
        assert got.get(office.code, set()) == want, office.code
    assert sum(len(v) for v in got.values()) == len(rows)  # no office got a record twice

    # caught up: a second run reads nothing; a new version is read alone
    again = returns.run(env.settings, env.store, client=client)
    assert again.counts["read"] == 0
    kind, doc = others[1]
    key = "ZZBS" if kind == "license" else "BJBH"
    _seed(env.platform, [(kind, dict(doc, BBH=2))])
    third = returns.run(env.settings, env.store, client=client)
    assert third.counts["read"] == 1 and third.counts["returned"] == 1
    with env.store.session() as s:
        versions = s.scalars(select(ReturnedRecord.version)
                             .where(ReturnedRecord.identifier == doc[key])).all()  # fmt: skip
    assert sorted(versions) == [1, 2]

    # a page read again (the cursor lost, as if the run died before committing) changes nothing
    before = (_count(env.store, ReturnedRecord), _count(env.store, FeedMessageRow))
    with env.store.session() as s:
        s.execute(ReturnCursor.__table__.delete())
    reread = returns.run(env.settings, env.store, client=client)
    assert reread.counts["read"] == len(records) + 2
    assert (_count(env.store, ReturnedRecord), _count(env.store, FeedMessageRow)) == before


class _Pages:
    """A platform answering one page with malformed items among good ones."""

    def __init__(self, items: list[Any]) -> None:
        self.items = items

    def return_page(self, division: str, after: int, limit: int = 500) -> ReturnPage:
        return ReturnPage(self.items if after == 0 else [], 99)

    def close(self) -> None:
        pass


def test_malformed_items_are_quarantined_with_their_field_and_the_rest_kept(env: Env) -> None:
    (_, good), (_, other) = [r for r in generate(12, seed=5) if r[0] == "license"][:2]
    items: list[Any] = [
        {"cursor": 1, "kind": "license", "identifier": good["ZZBS"], "version": 1,
         "record": good},
        "not an object",
        {"cursor": 3, "kind": "permit", "identifier": "x", "version": 1, "record": {}},
        {"cursor": 4, "kind": "license", "identifier": other["ZZBS"], "version": 0,
         "record": other},
        {"cursor": 5, "kind": "license", "identifier": "1.2.3", "version": 1, "record": other},
        {"cursor": 6, "kind": "case", "identifier": "B1", "version": 1, "record": None},
    ]  # fmt: skip
    result = returns.run(env.settings, env.store, client=_Pages(items))  # type: ignore[arg-type]
    assert result.counts["returned"] == 1 and result.counts["malformed"] == 5
    with env.store.session() as s:
        fields = sorted(s.scalars(select(QuarantineRow.field)
                                  .where(QuarantineRow.source_id == returns.SOURCE_ID)))  # fmt: skip
        reasons = set(s.scalars(select(QuarantineRow.reason_code)))
    assert fields == ["ZZBS", "item", "kind", "record", "version"]
    assert reasons == {"E_RETURN_MALFORMED"}


def test_returned_records_are_published_in_each_office_view(env: Env, broker: str) -> None:
    records = generate(60, seed=13)
    _seed(env.platform, records)
    settings = replace(env.settings, broker=broker)
    returns.run(settings, env.store, client=_client(env.platform))
    published = publish.run(settings, env.store)
    assert published.counts["published"] == _count(env.store, FeedMessageRow) > 0
    topics = _read_topics(broker, settings.return_topic_prefix)
    for office in (o for o in OFFICES if o.active):
        got = topics.get(settings.return_topic_prefix + office.code, [])
        want = {(d.get("ZZBS") or d["BJBH"]): (k, d) for k, d in records
                if expected(office, k, d)}  # fmt: skip
        assert sorted(m["identifier"] for m in got) == sorted(want), office.code
        for m in got:
            kind, doc = want[m["identifier"]]
            assert m["payload"] == view_for(office, kind, doc)
