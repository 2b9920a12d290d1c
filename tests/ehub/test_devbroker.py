"""The dev broker on durable storage: tansu on an S3-compatible object store of the
stack's own keeps its topics, messages and committed offsets across a kill and a
restart on the same port; in memory it does not (why the fault harness uses the
durable one)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError
from kafka.structs import OffsetAndMetadata

from ehub import devbroker, devstack
from ehub.config import stack_file

pytestmark = pytest.mark.broker


def _stack(home: Path, durable: bool) -> str:
    services = devbroker.start_broker(home / "dev" / "logs", durable=durable)
    path = stack_file(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"services": [s.__dict__ for s in services]}))
    return f"127.0.0.1:{services[-1].port}"


def _produce(broker: str, topic: str, n: int) -> None:
    admin = KafkaAdminClient(bootstrap_servers=broker)
    try:  # one partition: the order of the values is the order sent
        admin.create_topics([NewTopic(topic, 1, 1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=broker, acks="all")
    try:
        for i in range(n):
            producer.send(topic, key=f"k{i % 7}".encode(), value=f"m{i}".encode())
        producer.flush(30)
    finally:
        producer.close()


def _read(broker: str, topic: str, commit: int | None = None) -> tuple[list[bytes], int | None]:
    """Every value on partition 0, and the group's committed offset (after ``commit``)."""
    consumer = KafkaConsumer(bootstrap_servers=broker, group_id="ehub-test-group",
                             enable_auto_commit=False, consumer_timeout_ms=3000)  # fmt: skip
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        values = [m.value for m in consumer]
        if commit is not None:
            consumer.commit({tp: OffsetAndMetadata(commit, "", -1)})
        return values, consumer.committed(tp)
    finally:
        consumer.close()


def test_durable_broker_keeps_messages_and_offsets_across_a_kill(tmp_path: Path) -> None:
    home = tmp_path / "home"
    broker = _stack(home, durable=True)
    try:
        _produce(broker, "durable.t", 200)
        before, committed = _read(broker, "durable.t", commit=150)
        assert len(before) == 200 and committed == 150
        old = next(s for s in json.loads(stack_file(home).read_text())["services"]
                   if s["name"] == "broker")["pid"]  # fmt: skip
        new = devbroker.restart_broker(home, down_s=0.5)
        assert new != old and not devstack._alive(old)
        after, committed = _read(broker, "durable.t")
        assert after == before, "the restarted broker lost or reordered messages"
        assert committed == 150, "the restarted broker lost the group's offset"
        _produce(broker, "durable.t", 10)  # and it takes new ones after the old
        assert len(_read(broker, "durable.t")[0]) == 210
    finally:
        devstack.down(home)


def test_memory_broker_forgets_everything_on_restart(tmp_path: Path) -> None:
    home = tmp_path / "home"
    broker = _stack(home, durable=False)
    try:
        _produce(broker, "memory.t", 20)
        assert len(_read(broker, "memory.t")[0]) == 20
        devbroker.restart_broker(home)
        consumer = KafkaConsumer(bootstrap_servers=broker)
        try:
            assert "memory.t" not in consumer.topics()
        finally:
            consumer.close()
    finally:
        devstack.down(home)
