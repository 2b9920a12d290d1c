"""Feed publisher against the real embedded broker (tansu), read back independently."""

from __future__ import annotations

import uuid

from kafka import KafkaConsumer, TopicPartition

from connectors.kafka_feed import FeedMessage, FeedPublisher, scan_ids


def test_publish_then_scan_finds_every_message_id(broker: str) -> None:
    topic = f"t.{uuid.uuid4().hex[:8]}"
    pub = FeedPublisher(broker)
    msgs = [FeedMessage(topic, f"key{i % 4}", f"id{i}", f"v{i}".encode()) for i in range(25)]
    acks = pub.publish(msgs)
    pub.close()
    assert [a.message_id for a in acks] == [m.message_id for m in msgs]
    found = scan_ids(broker, [topic])
    assert set(found) == {m.message_id for m in msgs}
    # the same key always lands on the same partition (versions of a record stay ordered)
    by_key: dict[str, set[int]] = {}
    for m, a in zip(msgs, acks, strict=True):
        by_key.setdefault(m.key, set()).add(a.partition)
    assert all(len(p) == 1 for p in by_key.values())


def test_scan_of_unknown_topic_is_empty(broker: str) -> None:
    assert scan_ids(broker, ["does.not.exist"]) == {}


def test_values_are_read_back_by_a_plain_consumer(broker: str) -> None:
    topic = f"t.{uuid.uuid4().hex[:8]}"
    pub = FeedPublisher(broker, partitions=1)
    pub.publish([FeedMessage(topic, "k", "m1", "中文".encode())])
    pub.close()
    c = KafkaConsumer(bootstrap_servers=broker, enable_auto_commit=False)
    c.assign([TopicPartition(topic, 0)])
    c.seek_to_beginning()
    got = []
    for _ in range(10):
        for recs in c.poll(500).values():
            got += [r.value.decode() for r in recs]
        if got:
            break
    c.close()
    assert got == ["中文"]
