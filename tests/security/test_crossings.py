"""Crossings between offices: an office never reads another office's data, through the
pull API, the export or Kafka.

Every office of tests/ehub/test_routing.py (city, county with townships, township, a
county without townships, a revoked county) over generated licenses and cases, plus
records whose divisions sit just beside a jurisdiction. Each crossing — another
office's code, another office's token, revoked and forged credentials, forged cursors
and limits, kinds and divisions outside the grant — is tried; a leak is any record an
office receives that the jurisdiction rule (restated independently in ``expected``)
does not give it, or any answer other than the refusal.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest
from fastapi.testclient import TestClient

from ehub import office_feed
from ehub.config import Settings
from ehub.errors import ConfigError
from ehub.feeds import FeedRouter, FeedSigner, insert_rows, verify_envelope
from ehub.offices import (
    TOKEN_PREFIX,
    Office,
    RecordKind,
    add_office,
    get_office,
    issue_credential,
    revoke,
)
from ehub.pipeline import publish
from ehub.store.db import Store, utcnow
from ehub.store.models import CaseRow, LicenseRow
from ehub.store.models import Source as SourceRow
from ehub.verify_api import create_app
from tests.ehub.test_routing import OFFICES, expected, generate

#: Divisions beside the jurisdictions: a sibling county, a township of the county
#: registered without townships, a code that only shares a prefix, malformed codes.
BESIDE = ["370612", "370611100", "3706021", "37060", "370602001\x00", "370613001", "3706X2"]

Env = tuple[Settings, Store, dict[str, str], list[tuple[str, dict[str, Any]]]]


def _records() -> list[tuple[str, dict[str, Any]]]:
    records = generate()
    base_lic = next(d for k, d in records if k == "license")
    base_case = next(d for k, d in records if k == "case")
    for n, div in enumerate(BESIDE):
        lic = dict(
            base_lic, ZZBS=base_lic["ZZBS"].replace(".001.", f".{900 + n}.", 1), CZZTQHDM=div
        )
        records.append(("license", lic))
        records.append(("case", dict(base_case, BJBH=f"{base_case['BJBH']}-X{n}", XZQHDM=div)))
    return records


def _store(
    store: Store, records: list[tuple[str, dict[str, Any]]], router: FeedRouter | None = None
) -> None:
    with store.session() as s:
        for sid, kind in (("t.cases", "case"), ("t.licenses", "license")):
            s.add(
                SourceRow(id=sid, department="t", kind="sql", record_kind=kind, created_at=utcnow())
            )
        s.flush()
        feed_rows = []
        for n, (kind, doc) in enumerate(records):
            row: Any
            if kind == "license":
                row = LicenseRow(
                    identifier=doc["ZZBS"],
                    version=1,
                    type_code=doc["ZZLXDM"],
                    issuer_code=doc["ZZBFJGDM"],
                    holder_division=doc["CZZTQHDM"],
                    county=doc["CZZTQHDM"][:6],
                    status="valid",
                    content_hash="h",
                    document=doc,
                    source_id="t.licenses",
                    source_key=str(n),
                    raw_id=None,
                    state="sealed",
                    created_at=utcnow(),
                )
                ident, type_code = doc["ZZBS"], doc["ZZLXDM"]
            else:
                row = CaseRow(
                    case_number=doc["BJBH"],
                    version=1,
                    division=doc["XZQHDM"],
                    content_hash="h",
                    document=doc,
                    source_id="t.cases",
                    source_key=str(n),
                    raw_id=None,
                    created_at=utcnow(),
                )
                ident, type_code = doc["BJBH"], None
            s.add(row)
            s.flush()
            if router is not None:
                feed_rows += router.rows(cast(RecordKind, kind), row.id, ident, 1, doc, type_code)[
                    0
                ]
        if router is not None:
            insert_rows(s, feed_rows)


def _offices(store: Store, delivery: tuple[str, ...] = ("pull",)) -> dict[str, str]:
    tokens = {}
    for o in OFFICES:
        _, tokens[o.code] = add_office(
            store,
            o.code,
            o.name,
            o.division,
            kinds=o.kinds,
            fields=o.fields,
            license_types=o.license_types,
            include_children=o.include_children,
            masking=o.masking,
            delivery=delivery,  # type: ignore[arg-type]
        )
        if not o.active:
            revoke(store, o.code)
    return tokens


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    settings = Settings.from_env(home=tmp_path, database_url=f"sqlite:///{tmp_path / 'hub.db'}")
    store = Store(settings.database_url)
    store.migrate()
    records = _records()
    _store(store, records)
    tokens = _offices(store)
    try:
        yield settings, store, tokens, records
    finally:
        store.dispose()


def _allowed(office: Office, records: list[tuple[str, dict[str, Any]]]) -> set[str]:
    return {d.get("ZZBS") or d["BJBH"] for k, d in records if expected(office, k, d)}


class Tally:
    def __init__(self) -> None:
        self.tried = 0
        self.leaks: list[str] = []

    def leak(self, what: str) -> None:
        self.leaks.append(what)


def _get(api: TestClient, path: str, token: str | None, **params: Any) -> Any:
    headers = {"Authorization": token} if token is not None else {}
    return api.get(path, params=params, headers=headers)


def test_pull_api_crossings(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    settings, store, tokens, records = env
    t = Tally()
    active = [o for o in OFFICES if o.active]
    revoked = [o for o in OFFICES if not o.active]
    # a rotated credential: the old one revoked by its hint, the new one works
    rotated = active[0]
    new_token = issue_credential(store, rotated.code)
    revoke(store, rotated.code, credential=tokens[rotated.code][: len(TOKEN_PREFIX) + 6])
    old_token, tokens[rotated.code] = tokens[rotated.code], new_token

    def refused(r: Any, codes: tuple[int, ...], what: str) -> None:
        t.tried += 1
        if r.status_code not in codes or "items" in r.text:
            t.leak(f"{what}: HTTP {r.status_code} {r.text[:120]}")

    with TestClient(create_app(settings)) as api:
        for a in OFFICES:
            for b in OFFICES:
                for kind in ("license", "case"):
                    url = f"/v1/offices/{b.code}/records"
                    if a is b and a.active:
                        continue
                    # another office's code with one's own token; a revoked office's token
                    refused(
                        _get(api, url, f"Bearer {tokens[a.code]}", kind=kind),
                        (401, 403),
                        f"{a.code} token → {b.code} {kind}",
                    )
        for b in OFFICES:
            url = f"/v1/offices/{b.code}/records"
            forged = [
                None,
                "",
                "Bearer",
                "Bearer ",
                f"Basic {tokens[b.code]}",
                tokens[b.code],
                f"Bearer {old_token}",
                f"Bearer {tokens[b.code].upper()}",
                f"Bearer {tokens[b.code][:-1]}",
                f"Bearer {tokens[b.code]}x",
                f"Bearer {tokens[b.code][: len(TOKEN_PREFIX) + 6]}",
                "Bearer ehof_" + "A" * 43,
                f"Bearer {b.code}",
                "Bearer ' OR '1'='1",
                "Bearer %00",
                f"Bearer {json.dumps({'office': b.code})}",
            ]
            for token in forged:
                if b is rotated and token == f"Bearer {tokens[b.code]}":
                    continue
                codes = (401,) if b.active or token != f"Bearer {tokens[b.code]}" else (401, 403)
                refused(_get(api, url, token), codes, f"forged credential {token!r:.30} → {b.code}")
        # odd spellings of another office's code in the path
        a, b = active[1], active[2]
        for code in (
            b.code.upper(),
            f"{a.code}/../{b.code}",
            f"{b.code}%00",
            f"{b.code} ",
            f"{a.code},{b.code}",
            "*",
            "%25",
            f"{b.code}?x=",
            b.division,
        ):
            r = _get(api, f"/v1/offices/{code}/records", f"Bearer {tokens[a.code]}")
            refused(r, (403, 404, 401), f"path {code!r}")
        # forged cursors and limits on one's own endpoint: never anything outside the rule
        for o in active:
            allowed = _allowed(o, records)
            url = f"/v1/offices/{o.code}/records"
            for kind in ("license", "case", "seal", "license' OR 1=1"):
                for after in (-1, 0, 10**6, 2**63, "abc", "1 OR 1=1", "1.5", "0x10", ""):
                    for limit in (1, 1000, 0, 1001, -5):
                        t.tried += 1
                        r = _get(
                            api,
                            url,
                            f"Bearer {tokens[o.code]}",
                            kind=kind,
                            after=after,
                            limit=limit,
                        )
                        if r.status_code != 200:
                            if r.status_code not in (422,) or "items" in r.text:
                                t.leak(f"{o.code} after={after!r} limit={limit}: {r.status_code}")
                            continue
                        got = {i["identifier"] for i in r.json()["items"]}
                        if not got <= allowed or any(
                            i["record"].get("ZZBS", i["identifier"]) not in allowed
                            for i in r.json()["items"]
                        ):
                            t.leak(f"{o.code} after={after!r}: {sorted(got - allowed)[:3]}")
        # the whole of each office's own feed: exactly its records, beside-divisions included
        for o in active:
            allowed, got = _allowed(o, records), set()
            for kind in sorted(o.kinds):
                after = 0
                while True:
                    t.tried += 1
                    body = _get(
                        api,
                        f"/v1/offices/{o.code}/records",
                        f"Bearer {tokens[o.code]}",
                        kind=kind,
                        after=after,
                        limit=13,
                    ).json()
                    got |= {i["identifier"] for i in body["items"]}
                    after = body["next"]
                    if not body["more"]:
                        break
            if got - allowed:
                t.leak(f"{o.code}: {sorted(got - allowed)[:3]}")
            assert got, f"{o.code} received nothing: the test would prove nothing"
    assert revoked, "a revoked office is part of the crossings"
    with capsys.disabled():
        print(f"\ncrossings (pull API): crossings tried {t.tried}, leaks {len(t.leaks)}")
    assert t.leaks == []


def test_export_crossings(env: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _settings, store, _tokens, records = env
    tried, leaks = 0, []
    for o in OFFICES:
        office = get_office(store, o.code)
        for fmt in ("jsonl", "csv", "xlsx"):
            tried += 1
            out = tmp_path / "x" / o.code / fmt
            if not office.active:  # a revoked office gets no export (as no feed, no pull)
                with pytest.raises(ConfigError, match="revoked"):
                    office_feed.export(store, office, out, fmt)  # type: ignore[arg-type]
                if out.exists() and any(out.iterdir()):
                    leaks.append(f"{o.code}: export written for a revoked office")
                continue
            result = office_feed.export(store, office, out, fmt)  # type: ignore[arg-type]
            if result.path.parent != out:
                leaks.append(f"{o.code}: export written outside its folder: {result.path}")
            if fmt == "jsonl":
                rows = [json.loads(line) for line in result.path.read_text("utf-8").splitlines()]
                got = {r["identifier"] for r in rows}
                if got - _allowed(o, records):
                    leaks.append(f"{o.code}: {sorted(got - _allowed(o, records))[:3]}")
                if not got:
                    leaks.append(f"{o.code}: nothing exported, the test would prove nothing")
    with capsys.disabled():
        print(f"\ncrossings (export): crossings tried {tried}, leaks {len(leaks)}")
    assert leaks == []


def _read_topics(broker: str, prefix: str) -> dict[str, list[dict[str, Any]]]:
    """Every message under ``prefix``, read by a plain kafka-python consumer."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=broker, enable_auto_commit=False, client_id="crossing-reader"
    )
    try:
        topics = sorted(t for t in consumer.topics() if t.startswith(prefix))
        tps = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()]
        consumer.assign(tps)
        consumer.seek_to_beginning()
        out: dict[str, list[dict[str, Any]]] = {t: [] for t in topics}
        empty = 0
        while empty < 3:
            batch = consumer.poll(timeout_ms=500)
            empty = 0 if batch else empty + 1
            for tp, msgs in batch.items():
                out[tp.topic] += [json.loads(m.value) for m in msgs]
        return out
    finally:
        consumer.close()


def test_kafka_crossings(tmp_path: Path, broker: str, capsys: pytest.CaptureFixture[str]) -> None:
    prefix = f"sec.{tmp_path.name[-12:].lower()}."
    settings = replace(
        Settings.from_env(
            home=tmp_path,
            database_url=f"sqlite:///{tmp_path / 'hub.db'}",
            broker=broker,
            batch_size=40,
        ),
        return_topic_prefix=prefix,
    )
    store = Store(settings.database_url)
    store.migrate()
    try:
        _offices(store, ("kafka",))
        records = _records()
        _store(store, records, FeedRouter.load(store, prefix))
        publish.run(settings, store)
        topics = _read_topics(broker, prefix)
        hub_cert = FeedSigner.dev(settings.home).cert
    finally:
        store.dispose()
    tried, leaks = 0, []
    revoked = {prefix + o.code for o in OFFICES if not o.active}
    for topic in revoked:
        tried += 1
        if topics.get(topic):
            leaks.append(f"{topic}: a revoked office's topic holds {len(topics[topic])} messages")
    for o in (o for o in OFFICES if o.active):
        allowed = _allowed(o, records)
        msgs = topics.get(prefix + o.code, [])
        assert msgs, f"{o.code}: no messages, the test would prove nothing"
        for m in msgs:
            tried += 1
            if m["office"] != o.code or m["identifier"] not in allowed:
                leaks.append(f"{o.code}: message of {m['office']} / {m['identifier']}")
        # an envelope re-addressed to another office no longer verifies
        for other in OFFICES:
            if other is o:
                continue
            tried += 1
            forged = dict(msgs[0], office=other.code)
            if verify_envelope(json.dumps(forged, ensure_ascii=False).encode(), [hub_cert]):
                leaks.append(f"{o.code}: envelope re-addressed to {other.code} still verifies")
    with capsys.disabled():
        print(f"\ncrossings (kafka): crossings tried {tried}, leaks {len(leaks)}")
    assert leaks == []
