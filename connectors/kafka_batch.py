"""Bulk producer of the return feeds: kafka-python's network client, our record batches.

``KafkaProducer.send`` costs ~65 µs of CPU per message in kafka-python (the
accumulator, one future and lock per record, the sender thread), more than the
rest of the publish stage per message. :class:`BatchPublisher` sends what the
outbox hands it in one go: per partition one v2 record batch (written by
:func:`connectors.kafka_fast.record_batch` as kafka-python's
``DefaultRecordBatchBuilder`` would, CRC-32C by Google's C library),
per leader one ``ProduceRequest`` with ``acks=all``, and waits for the answer.
A message's offset is its batch's base offset plus its index in the batch.

Same wire format, headers (``message-id``) and partitioning (the key's murmur2,
computed for a whole batch at once, as Kafka's default partitioner: a record's versions stay on one partition, in
the order given) as :class:`connectors.kafka_feed.FeedPublisher`, and the same
contract: all acknowledged or :class:`BrokerUnavailable`, no retries and no
idempotent producer — the caller's outbox and a topic scan make delivery
exactly-once. Must not import Airflow.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence

from kafka.client_async import KafkaClient
from kafka.errors import KafkaError, for_code
from kafka.protocol.produce import ProduceRequest
from kafka.structs import TopicPartition

from connectors.errors import BrokerUnavailable
from connectors.kafka_fast import install, murmur2_many, record_batch
from connectors.kafka_feed import ID_HEADER, FeedMessage, Published, TopicCreator
from connectors.tls import ClientTls, kafka_kwargs

log = logging.getLogger(__name__)

install()  # the fast CRC-32C for every record batch of the process (built or checked)

MAX_BATCH_BYTES = 900 * 1024
"""A record batch stays under a default Kafka's ``message.max.bytes`` (1 MiB); a single
larger message still goes alone in its batch."""
MAX_REQUEST_BYTES = 8 * 1024 * 1024
"""Record batches are grouped into requests of at most this size."""
_ID_HEADER = ID_HEADER.encode()


class BatchPublisher:
    """Publishes sequences of :class:`FeedMessage` to one broker, waiting for every ack."""

    def __init__(
        self,
        bootstrap: str,
        *,
        partitions: int = 3,
        client_id: str = "ehub-feeds",
        timeout_ms: int = 30000,
        tls: ClientTls | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.partitions = partitions
        self._timeout_ms = timeout_ms
        self._topics = TopicCreator(bootstrap, partitions, client_id=f"{client_id}-admin", tls=tls)
        try:
            self._client = KafkaClient(**kafka_kwargs(tls), bootstrap_servers=bootstrap,
                                       client_id=client_id, request_timeout_ms=timeout_ms)  # fmt: skip
            self._client.check_version(timeout=10)
            self._version = self._client.api_version(ProduceRequest, max_version=7)
        except (KafkaError, ssl.SSLError) as exc:
            raise BrokerUnavailable(
                f"Kafka broker {bootstrap} is unreachable ({exc}); check EHUB_BROKER "
                "(dev: `ehub dev up`)"
            ) from exc

    # --- topics and metadata ---------------------------------------------------------

    def ensure_topics(self, topics: Iterable[str]) -> None:
        self._topics.ensure(topics)

    def _partitions(self, topics: set[str]) -> dict[str, list[int]]:
        """Every partition of each topic, sorted (as the default partitioner sees them)."""
        out: dict[str, list[int]] = {}
        deadline = time.monotonic() + self._timeout_ms / 1000
        while True:
            unknown = []
            for topic in topics:
                parts = self._client.cluster.partitions_for_topic(topic)
                leaders_known = parts and all(
                    self._client.cluster.leader_for_partition(TopicPartition(topic, p)) is not None
                    for p in parts
                )
                if parts and leaders_known:
                    out[topic] = sorted(parts)
                else:
                    unknown.append(topic)
            if not unknown:
                return out
            if time.monotonic() > deadline:
                raise BrokerUnavailable(
                    f"no metadata for {len(unknown)} topics on {self.bootstrap} "
                    f"(e.g. {unknown[0]}) within {self._timeout_ms} ms"
                )
            future = None
            for topic in unknown:
                future = self._client.add_topic(topic)
            if future is None or future.is_done:
                future = self._client.cluster.request_update()
            self._client.poll(future=future, timeout_ms=1000)
            if future.is_done and future.failed():
                time.sleep(0.1)

    # --- publishing --------------------------------------------------------------------

    def publish(self, messages: Sequence[FeedMessage]) -> list[Published]:
        """Send and wait for every acknowledgement; all (in input order) or an exception."""
        if not messages:
            return []
        try:
            self.ensure_topics(m.topic for m in messages)
            parts = self._partitions({m.topic for m in messages})
            groups: dict[TopicPartition, list[int]] = defaultdict(list)
            hashes = murmur2_many([m.key.encode() for m in messages])
            for i, (m, h) in enumerate(zip(messages, hashes, strict=True)):
                all_parts = parts[m.topic]
                p = all_parts[(h & 0x7FFFFFFF) % len(all_parts)]
                groups[TopicPartition(m.topic, p)].append(i)
            out: list[Published | None] = [None] * len(messages)
            for chunk in _chunks(messages, groups):
                self._send_chunk(messages, chunk, out)
        except KafkaError as exc:
            raise BrokerUnavailable(
                f"publishing {len(messages)} messages to {self.bootstrap} failed ({exc}); "
                "they stay pending and are re-published after a topic scan"
            ) from exc
        log.info("broker %s: published %d messages", self.bootstrap, len(messages))
        return [p for p in out if p is not None]

    def _send_chunk(
        self,
        messages: Sequence[FeedMessage],
        groups: dict[TopicPartition, list[int]],
        out: list[Published | None],
    ) -> None:
        """One record batch per partition of ``groups``; one request per leader; wait."""
        by_node: dict[int, list[tuple[TopicPartition, bytes, list[int]]]] = defaultdict(list)
        for tp, idx in groups.items():
            now_ms = int(time.time() * 1000)
            batch = record_batch(
                [(messages[i].key.encode(), messages[i].value, messages[i].message_id.encode())
                 for i in idx],
                now_ms,
                _ID_HEADER,
            )  # fmt: skip
            node = self._client.cluster.leader_for_partition(tp)
            if node is None or node == -1:
                raise BrokerUnavailable(f"no leader for {tp.topic}[{tp.partition}]")
            by_node[node].append((tp, batch, idx))
        pending = []
        for node, batches in by_node.items():
            if not self._client.await_ready(node, timeout_ms=self._timeout_ms):
                raise BrokerUnavailable(f"broker node {node} of {self.bootstrap} not ready")
            topics: dict[str, list[tuple[int, bytes]]] = defaultdict(list)
            for tp, buf, _idx in batches:
                topics[tp.topic].append((tp.partition, buf))
            fields = {"required_acks": -1, "timeout": self._timeout_ms,
                      "topics": list(topics.items())}  # fmt: skip
            if self._version >= 3:
                fields["transactional_id"] = None
            request = ProduceRequest[self._version](**fields)
            pending.append((self._client.send(node, request), batches))
        for future, batches in pending:
            self._client.poll(future=future, timeout_ms=self._timeout_ms)
            if not future.is_done:
                raise BrokerUnavailable(f"no answer from {self.bootstrap} in {self._timeout_ms} ms")
            if future.failed():
                raise future.exception
            where = {(tp.topic, tp.partition): idx for tp, _buf, idx in batches}
            for topic, answers in future.value.topics:
                for answer in answers:
                    partition, error_code, base_offset = answer[0], answer[1], answer[2]
                    if error_code:
                        raise for_code(error_code)(f"{topic}[{partition}]")
                    for n, i in enumerate(where.pop((topic, partition))):
                        out[i] = Published(messages[i].message_id, partition, base_offset + n)
            if where:
                raise BrokerUnavailable(f"no acknowledgement for {sorted(where)[:3]}")

    def close(self) -> None:
        try:
            self._client.close()
        finally:
            self._topics.close()


def _chunks(
    messages: Sequence[FeedMessage], groups: dict[TopicPartition, list[int]]
) -> Iterable[dict[TopicPartition, list[int]]]:
    """The partition groups cut into requests: per request at most one record batch per
    partition, each under :data:`MAX_BATCH_BYTES`, together under :data:`MAX_REQUEST_BYTES`.
    A partition's later batches go into later requests, so its order is kept."""
    cuts: dict[TopicPartition, list[tuple[list[int], int]]] = {}
    for tp, idx in groups.items():
        batches: list[tuple[list[int], int]] = []
        part: list[int] = []
        size = 0
        for i in idx:
            m = messages[i]
            n = len(m.value) + len(m.key) + len(m.message_id) + 80
            if part and size + n > MAX_BATCH_BYTES:
                batches.append((part, size))
                part, size = [], 0
            part.append(i)
            size += n
        batches.append((part, size))
        cuts[tp] = batches
    while cuts:
        chunk: dict[TopicPartition, list[int]] = {}
        total = 0
        for tp in list(cuts):
            part, size = cuts[tp][0]
            if chunk and total + size > MAX_REQUEST_BYTES:
                break
            chunk[tp] = part
            total += size
            cuts[tp].pop(0)
            if not cuts[tp]:
                del cuts[tp]
        yield chunk
