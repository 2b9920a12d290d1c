"""Kafka source against the real embedded broker (tansu): bounded batches, a run killed
mid-way resumed from the stored cursor, group offsets, invalid values as error records."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from connectors.errors import SourceRejected, SourceUnavailable
from connectors.kafka_feed import FeedMessage, FeedPublisher
from connectors.kafka_source import KafkaSource, KafkaSourceSpec
from connectors.source import SourceBatch
from ehub import devstack


def _topic(broker: str, n: int, *, partitions: int = 3, first: int = 0) -> str:
    topic = f"dept.events.{uuid.uuid4().hex[:10]}"
    _produce(broker, topic, range(first, first + n), partitions=partitions)
    return topic


def _produce(broker: str, topic: str, ids: Any, *, partitions: int = 3) -> None:
    pub = FeedPublisher(broker, partitions=partitions)
    msgs = [
        FeedMessage(topic, f"k{i}", f"m{i}", json.dumps({"ZZBS": f"id{i}", "n": i}).encode())
        for i in ids
    ]
    pub.publish(msgs)
    pub.close()


def _spec(broker: str, topic: str, **kw: Any) -> KafkaSourceSpec:
    base: dict[str, Any] = {
        "name": "transport.license_events",
        "bootstrap_servers": broker,
        "topic": topic,
        "group_id": f"ehub.test.{uuid.uuid4().hex[:8]}",
        "key_field": "ZZBS",
        "batch_size": 7,
        "poll_timeout_ms": 300,
    }
    base.update(kw)
    return KafkaSourceSpec(**base)


def _ns(batches: list[SourceBatch]) -> list[int]:
    return [r.payload["n"] for b in batches for r in b.records]


def _run(spec: KafkaSourceSpec, cursor: str | None) -> list[SourceBatch]:
    src = KafkaSource(spec)
    try:
        out = []
        for b in src.read(cursor):
            out.append(b)
            src.commit(b)
        return out
    finally:
        src.close()


def test_reads_every_message_once_in_bounded_batches(broker: str) -> None:
    topic = _topic(broker, 50)
    spec = _spec(broker, topic)
    batches = _run(spec, None)
    assert all(0 < len(b.records) <= 7 for b in batches)
    assert sorted(_ns(batches)) == list(range(50))
    rec = batches[0].records[0]
    assert rec.key == f"id{rec.payload['n']}"
    versions = [r.version for b in batches for r in b.records]
    assert len(set(versions)) == 50
    final = json.loads(batches[-1].cursor)
    assert sorted(final) == ["0", "1", "2"] and sum(final.values()) == 50
    # a new run from the final cursor finds nothing
    assert _run(spec, batches[-1].cursor) == []


def test_run_killed_mid_way_resumes_from_the_stored_cursor(broker: str) -> None:
    topic = _topic(broker, 60)
    spec = _spec(broker, topic)
    src = KafkaSource(spec)
    stored, committed = None, []
    run = src.read(None)
    for _ in range(3):  # the hub stores three batches and commits them
        b = next(run)
        stored = b.cursor
        committed.append(b)
        src.commit(b)
    next(run)  # a fourth is read, then the run dies before the hub stores it
    src.close()
    resumed = _run(spec, stored)
    got = _ns(committed) + _ns(resumed)
    assert sorted(got) == list(range(60))  # all, exactly once


def test_without_a_cursor_the_group_offsets_are_the_start(broker: str) -> None:
    topic = _topic(broker, 30)
    spec = _spec(broker, topic)
    src = KafkaSource(spec)
    run = src.read(None)
    first = [next(run), next(run)]
    for b in first:
        src.commit(b)
    src.close()
    rest = _run(spec, None)  # same group, the hub lost its cursor
    assert sorted(_ns(first) + _ns(rest)) == list(range(30))
    # another group without offsets starts at the beginning (auto_offset_reset earliest)
    assert sorted(_ns(_run(_spec(broker, topic), None))) == list(range(30))


def test_a_run_reads_what_was_there_when_it_started(broker: str) -> None:
    topic = _topic(broker, 20, partitions=1)
    spec = _spec(broker, topic)
    src = KafkaSource(spec)
    run = src.read(None)
    batches = [next(run)]
    _produce(broker, topic, range(100, 110), partitions=1)  # arrives during the run
    batches += list(run)
    src.close()
    assert _ns(batches) == list(range(20))
    assert _ns(_run(spec, batches[-1].cursor)) == list(range(100, 110))


def test_one_source_reads_again_after_new_messages(broker: str) -> None:
    topic = _topic(broker, 5)
    src = KafkaSource(_spec(broker, topic))
    try:
        first = list(src.read(None))
        _produce(broker, topic, range(5, 12))
        second = list(src.read(first[-1].cursor))
    finally:
        src.close()
    assert sorted(_ns(first)) == list(range(5))
    assert sorted(_ns(second)) == list(range(5, 12))


def test_invalid_values_become_error_records(broker: str) -> None:
    topic = f"dept.events.{uuid.uuid4().hex[:10]}"
    pub = FeedPublisher(broker, partitions=1)
    values = [b'{"ZZBS": "ok1", "n": 1}', b"not json {", "中文".encode("gbk"), b"[1, 2]"]
    pub.publish([FeedMessage(topic, f"k{i}", f"m{i}", v) for i, v in enumerate(values)])
    pub.close()
    recs = [r for b in _run(_spec(broker, topic), None) for r in b.records]
    assert [r.key for r in recs] == ["ok1", "k1", "k2", "k3"]
    assert recs[0].payload == {"ZZBS": "ok1", "n": 1}
    assert recs[1].payload["__raw__"] == "not json {"
    assert recs[1].payload["__error__"].startswith("invalid JSON: ")
    assert "\ufffd" in recs[2].payload["__raw__"]
    assert "do not decode as utf-8" in recs[2].payload["__error__"]
    assert recs[3].payload["__error__"] == "invalid JSON: expected an object, got list"
    assert [r.version for r in recs] == ["0:0", "0:1", "0:2", "0:3"]


def test_unknown_topic_is_rejected(broker: str) -> None:
    spec = _spec(broker, f"missing.{uuid.uuid4().hex[:8]}", metadata_timeout_s=1.0)
    with pytest.raises(
        SourceRejected, match=r"transport\.license_events: topic missing\.\w+ not found"
    ):
        _run(spec, None)


def test_unreachable_broker_is_unavailable() -> None:
    spec = _spec(f"127.0.0.1:{devstack.free_port()}", "t")
    with pytest.raises(SourceUnavailable, match=r"transport\.license_events: connecting topic t"):
        _run(spec, None)


def test_bad_cursor_is_rejected(broker: str) -> None:
    topic = _topic(broker, 1)
    with pytest.raises(SourceRejected, match="not a Kafka cursor"):
        _run(_spec(broker, topic), "0:12")
