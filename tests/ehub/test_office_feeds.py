"""Return feeds per office on the real embedded broker, read back with a second,
independent Kafka client: offices at city, county and township level each receive
exactly the records of their jurisdiction, with exactly their fields, masked per
their policy, signed by the hub, and nothing of another office.

The independent client is kcat (Debian's, librdkafka 2.0): C code sharing nothing
with the hub's kafka-python producer. tansu 0.6.0 answers ApiVersions v3 in a shape
librdkafka misparses ("ApiVersionRequest failed: Local: Read underflow"), so this
test starts its own tansu behind :mod:`tests.kafka_apiversions_proxy`. The proxy
touches version negotiation only: it answers an ApiVersions request of version >= 3
itself with UNSUPPORTED_VERSION (KIP-511), librdkafka retries at v2, and tansu's
own answer passes unchanged. Metadata, fetches and every record byte kcat reads
are tansu's, forwarded untouched. A plain kafka-python consumer (none of the hub's
feed code) reads the same topics as a cross-check."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import jsonschema
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from ehub import devstack
from ehub.audit import append
from ehub.cli import main
from ehub.config import Settings
from ehub.feeds import FeedRouter, FeedSigner, insert_rows, verify_envelope
from ehub.office_feed import freshness
from ehub.offices import add_office, revoke
from ehub.pipeline import publish
from ehub.routing import view_for
from ehub.store.db import Store, utcnow
from ehub.store.models import AuditEvent, CaseRow, FeedMessageRow, LicenseRow
from ehub.store.models import Source as SourceRow
from schemas import path as schema_path
from tests.conftest import need_binary, tansu_broker
from tests.ehub.test_routing import OFFICES, expected, generate
from tests.kafka_apiversions_proxy import ApiVersionsProxy

if TYPE_CHECKING:
    from ehub.offices import RecordKind


@pytest.fixture
def proxied_broker() -> Iterator[ApiVersionsProxy]:
    """A tansu broker of this test's own, reached through the ApiVersions proxy: tansu
    listens on its own port and advertises the proxy's, so every connection a client
    opens after the bootstrap one comes back through the proxy too."""
    proxy = ApiVersionsProxy(("127.0.0.1", devstack.free_port())).start()
    try:
        with tansu_broker(proxy.upstream[1], advertised=proxy.address):
            yield proxy
    finally:
        proxy.close()


def _kcat_topics(kcat: str, broker: str, prefix: str) -> dict[str, list[dict[str, Any]]]:
    """Every message of every topic under ``prefix``, read by kcat from the beginning
    to the end of each partition (``-C -e -o beginning -J``), envelopes parsed."""
    meta = subprocess.run([kcat, "-L", "-J", "-b", broker, "-m", "10"],
                          capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    topics = sorted(t["topic"] for t in json.loads(meta.stdout)["topics"]
                    if t["topic"].startswith(prefix))  # fmt: skip
    out: dict[str, list[dict[str, Any]]] = {}
    for topic in topics:
        run = subprocess.run(
            [kcat, "-C", "-b", broker, "-t", topic, "-e", "-o", "beginning", "-J", "-q"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        messages = [json.loads(line) for line in run.stdout.splitlines() if line.strip()]
        for m in messages:  # the message key is the record identifier
            assert json.loads(m["payload"])["identifier"] == m["key"], m
        out[topic] = [json.loads(m["payload"]) for m in messages]
    return out


def _read_topics(broker: str, prefix: str) -> dict[str, list[dict[str, Any]]]:
    """The same, read by a plain kafka-python consumer (assigned partitions from the
    beginning; none of the hub's feed code): a cross-check of kcat's reading."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=broker, enable_auto_commit=False,
                             client_id="independent-reader")  # fmt: skip
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
            for tp, records in batch.items():
                out[tp.topic] += [json.loads(r.value) for r in records]
        return out
    finally:
        consumer.close()


def _store_records(store: Store, router: FeedRouter) -> tuple[list[Any], int]:
    """The generated records as the stages store them: rows, and feed outbox rows written
    with them by the same routing the seal and normalize stages use."""
    records = generate()
    unroutable = 0
    with store.session() as s:
        for sid, kind in (("t.cases", "case"), ("t.licenses", "license")):
            s.add(SourceRow(id=sid, department="t", kind="sql", record_kind=kind,
                            created_at=utcnow()))  # fmt: skip
        s.flush()
        feed_rows, events = [], []
        for n, (kind, doc) in enumerate(records):
            if kind == "license":
                row: Any = LicenseRow(
                    identifier=doc["ZZBS"], version=1, type_code=doc["ZZLXDM"],
                    issuer_code=doc["ZZBFJGDM"], holder_division=doc["CZZTQHDM"],
                    county=doc["CZZTQHDM"][:6], status="valid", content_hash="h", document=doc,
                    source_id="t.licenses", source_key=str(n), raw_id=None, state="sealed",
                    created_at=utcnow(),
                )  # fmt: skip
                ident, type_code = doc["ZZBS"], doc["ZZLXDM"]
            else:
                row = CaseRow(case_number=doc["BJBH"], version=1, division=doc["XZQHDM"],
                              content_hash="h", document=doc, source_id="t.cases",
                              source_key=str(n), raw_id=None, created_at=utcnow())  # fmt: skip
                ident, type_code = doc["BJBH"], None
            s.add(row)
            s.flush()
            got, ev = router.rows(cast("RecordKind", kind), row.id, ident, 1, doc, type_code)
            feed_rows += got
            events += ev
        # one record with an unknown division: reported, never routed silently
        bad = dict(records[0][1], ZZBS=records[0][1]["ZZBS"][:-1] + "9", CZZTQHDM="379999")
        got, ev = router.rows("license", 0, bad["ZZBS"], 1, bad, bad["ZZLXDM"])
        assert (
            got == []
            and ev
            and ev[0].event == "unroutable"
            and (ev[0].detail or {})["field"] == "CZZTQHDM"
        )
        unroutable += 1
        events += ev
        insert_rows(s, feed_rows)
        append(s, events)
    return records, unroutable


def test_each_office_topic_holds_exactly_its_records(
    tmp_path: Path, proxied_broker: ApiVersionsProxy
) -> None:
    kcat = need_binary("kcat", "kcat")
    broker = proxied_broker.address
    prefix = f"test.{tmp_path.name[-12:].lower()}."
    settings = replace(
        Settings.from_env(home=tmp_path, database_url=f"sqlite:///{tmp_path / 'hub.db'}",
                          broker=broker, batch_size=40),
        return_topic_prefix=prefix,
    )  # fmt: skip
    store = Store(settings.database_url)
    store.migrate()
    try:
        for o in OFFICES:
            add_office(store, o.code, o.name, o.division, kinds=o.kinds, fields=o.fields,
                       license_types=o.license_types, include_children=o.include_children,
                       masking=o.masking, delivery=("kafka",))  # fmt: skip
            if not o.active:
                revoke(store, o.code)
        router = FeedRouter.load(store, prefix)
        assert {o.code for o in router.offices} == {o.code for o in OFFICES if o.active}
        records, _ = _store_records(store, router)
        result = publish.run(settings, store)
        with store.session() as s:
            rows = s.scalar(select(func.count()).select_from(FeedMessageRow))
            unroutable = s.scalars(
                select(AuditEvent.subject).where(AuditEvent.event == "unroutable")
            ).all()
        assert result.counts["published"] == rows and rows > len(records) // 2
        assert len(unroutable) == 1
        hub_cert = FeedSigner.dev(settings.home).cert
        schema = json.loads(schema_path("return_envelope.schema.json").read_text("utf-8"))
        topics = _kcat_topics(kcat, broker, prefix)
        assert proxied_broker.answered > 0  # kcat negotiated through the proxy's fallback
        cross = _read_topics(broker, prefix)
        assert {t: sorted(m["message_id"] for m in ms) for t, ms in cross.items()} == {
            t: sorted(m["message_id"] for m in ms) for t, ms in topics.items()
        }
        # one topic per active office that has records, and no other
        assert sorted(topics) == sorted({prefix + o.code for o in OFFICES if o.active})
        total = 0
        for office in (o for o in OFFICES if o.active):
            got = topics[prefix + office.code]
            total += len(got)
            want = {(d.get("ZZBS") or d["BJBH"]): (k, d) for k, d in records
                    if expected(office, k, d)}  # fmt: skip
            assert sorted(m["identifier"] for m in got) == sorted(want), office.code
            for m in got:
                jsonschema.validate(m, schema)
                assert m["office"] == office.code
                kind, doc = want[m["identifier"]]
                assert m["kind"] == kind
                assert m["payload"] == view_for(office, kind, doc)  # fields + masking
                assert verify_envelope(json.dumps(m, ensure_ascii=False).encode(), [hub_cert])
            forged = dict(got[0], payload={**got[0]["payload"], "injected": 1})
            assert not verify_envelope(json.dumps(forged).encode(), [hub_cert])
        assert total == rows
        # freshness per office: what was published, nothing waiting, a measured lag
        fresh = {f.office: f for f in freshness(store)}
        for office in (o for o in OFFICES if o.active):
            f = fresh[office.code]
            assert f.published == len(topics[prefix + office.code]) and f.pending == 0
            assert f.oldest_pending_s is None and f.p95_lag_s is not None and f.p95_lag_s >= 0
        with store.session() as s:  # a message not yet published shows as waiting
            row = s.scalars(select(FeedMessageRow).limit(1)).one()
            row.state = "pending"
        waiting = {f.office: f for f in freshness(store)}[str(row.office)]
        assert waiting.pending == 1 and waiting.oldest_pending_s is not None
        out = CliRunner().invoke(main, ["office", "status", "--broker", broker,
                                        "--topic-prefix", prefix],
                                 env={"EHUB_DATABASE_URL": settings.database_url})  # fmt: skip
        assert out.exit_code == 0, out.output
        # no office consumer has committed anything yet: its lag is its whole topic
        for office in (o for o in OFFICES if o.active):
            shown = next(ln for ln in out.output.splitlines() if f" {office.code} " in ln)
            lag = shown.replace("│", " ").split()[-1].replace(",", "")
            assert lag == str(len(topics[prefix + office.code])), shown
    finally:
        store.dispose()
