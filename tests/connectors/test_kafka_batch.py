"""The bulk feed producer and kafka-python's fast paths: CRC-32C and murmur2 equal to the
reference implementations, batches read back with their CRCs checked by kcat (librdkafka,
an independent client) and placed on the partitions KafkaProducer would choose."""

from __future__ import annotations

import os
import random
import subprocess
import uuid
from collections.abc import Iterator

import pytest
from kafka.partitioner.default import murmur2 as reference_murmur2
from kafka.record._crc32c import crc as reference_crc32c

from connectors.kafka_batch import MAX_BATCH_BYTES, BatchPublisher
from connectors.kafka_fast import crc32c, crc32c_numpy, murmur2, murmur2_many, record_batch
from connectors.kafka_feed import FeedMessage, FeedPublisher
from tests.conftest import need_binary, tansu_broker
from tests.kafka_apiversions_proxy import ApiVersionsProxy


@pytest.fixture
def kcat_broker() -> Iterator[str]:
    """A tansu broker behind the ApiVersions proxy, which kcat (librdkafka 2.0) needs to
    negotiate with tansu 0.6 (see tests/ehub/test_office_feeds.py); records pass untouched."""
    from ehub import devstack

    port = devstack.free_port()
    proxy = ApiVersionsProxy(("127.0.0.1", port)).start()
    try:
        with tansu_broker(port, advertised=proxy.address):
            yield proxy.address
    finally:
        proxy.close()


def test_crc32c_equals_the_reference_at_every_size() -> None:
    rng = random.Random(7)
    assert crc32c(b"123456789" * 500) == reference_crc32c(b"123456789" * 500)
    sizes = [0, 1, 3, 4, 5, 63, 64, 65, 2047, 2048, 2049, 4096, 65_537, 300_001]
    for n in sizes:
        data = rng.randbytes(n)
        assert crc32c(data) == reference_crc32c(data), n
        assert crc32c(memoryview(bytearray(data))) == reference_crc32c(data), n


def test_numpy_crc32c_fallback_equals_the_reference() -> None:
    rng = random.Random(8)
    for n in [0, 1, 5, 2047, 2048, 2049, 65_537, 300_001]:
        data = rng.randbytes(n)
        assert crc32c_numpy(data) == reference_crc32c(data), n


def test_record_batch_is_what_kafka_python_builds() -> None:
    from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

    rng = random.Random(5)
    for count in (1, 2, 63, 64, 65, 300, 8200):
        records = [
            (rng.randbytes(rng.choice([1, 20, 81, 200])),
             rng.randbytes(rng.choice([0, 1, 63, 64, 1500, 8191, 8192, 70_000])),
             rng.randbytes(48))
            for _ in range(count)
        ]  # fmt: skip
        ref = DefaultRecordBatchBuilder(
            magic=2, compression_type=0, is_transactional=False, producer_id=-1,
            producer_epoch=-1, base_sequence=-1, batch_size=1 << 30,
        )  # fmt: skip
        for n, (key, value, mid) in enumerate(records):
            ref.append(n, timestamp=1_700_000_000_123, key=key, value=value,
                       headers=[("message-id", mid)])  # fmt: skip
        built = record_batch(records, 1_700_000_000_123, b"message-id")
        assert built == bytes(ref.build()), count
        batch = DefaultRecordBatch(built)
        assert batch.validate_crc()
        read = list(batch)
        assert [(r.key, r.value, r.headers[0][1]) for r in read] == records
    with pytest.raises(ValueError):
        record_batch([], 0, b"message-id")


def test_crc32c_check_value() -> None:
    # The standard check value of CRC-32C (RFC 3720), on the pure-Python path and the
    # vector path (a long prefix of zero bytes changes the CRC, so both are exercised).
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(bytes(10_000)) == reference_crc32c(bytes(10_000))


def test_murmur2_equals_kafka_python() -> None:
    for n in range(0, 120):
        data = os.urandom(n)
        assert murmur2(data) == reference_murmur2(data)


def test_murmur2_of_many_keys_equals_kafka_python() -> None:
    rng = random.Random(4)
    keys = [
        rng.randbytes(rng.choice([0, 1, 2, 3, 4, 5, 7, 8, 75, 76, 77, 78])) for _ in range(3000)
    ]
    keys += [f"1.2.156.3005.2.11100000000013338W001.F{i:09d}.001.N".encode() for i in range(500)]
    rng.shuffle(keys)
    assert murmur2_many(keys) == [reference_murmur2(k) for k in keys]
    assert murmur2_many([]) == []


def test_batches_are_read_by_kcat_and_partitioned_as_kafka_producer_does(
    kcat_broker: str,
) -> None:
    broker = kcat_broker
    kcat = need_binary("kcat", "kcat")
    topic = f"b.{uuid.uuid4().hex[:8]}"
    big = "中" * 2000  # ~6 kB per message: two record batches for one partition
    msgs = [
        FeedMessage(topic, f"record-{i % 7}", f"id{i}", f"{i}|{big}".encode()) for i in range(400)
    ]
    assert sum(len(m.value) for m in msgs) > 2 * MAX_BATCH_BYTES
    pub = BatchPublisher(broker)
    try:
        acks = pub.publish(msgs)
    finally:
        pub.close()
    assert [a.message_id for a in acks] == [m.message_id for m in msgs]
    # The same key on the same partition as KafkaProducer's default partitioner.
    ref = FeedPublisher(broker)
    try:
        ref_acks = ref.publish([FeedMessage(f"{topic}.ref", m.key, m.message_id, b"")
                                for m in msgs[:7]])  # fmt: skip
    finally:
        ref.close()
    assert [a.partition for a in ref_acks] == [a.partition for a in acks[:7]]
    # Offsets: per partition consecutive, in the order given (a record's versions stay ordered).
    by_part: dict[int, list[int]] = {}
    for a in acks:
        by_part.setdefault(a.partition, []).append(a.offset)
    assert all(offs == list(range(offs[0], offs[0] + len(offs))) for offs in by_part.values())
    out = subprocess.run(
        [kcat, "-b", broker, "-C", "-t", topic, "-e", "-q", "-X", "check.crcs=true",
         "-f", "%p %o %h\n"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    seen = {}
    for line in out.stdout.splitlines():
        part, offset, headers = line.split(" ", 2)
        seen[headers.removeprefix("message-id=")] = (int(part), int(offset))
    expected = {a.message_id: (a.partition, a.offset) for a in acks}
    assert {k: v for k, v in seen.items() if k in expected} == expected
