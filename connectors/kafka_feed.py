"""Kafka producer of the return-to-locality feeds (kafka-python).

Publishes messages keyed by license identifier (so the versions of a record stay
in order on one partition), each with a ``message-id`` header. Delivery is made
exactly-once by the caller's outbox together with :meth:`FeedPublisher.scan_ids`:
after a crash between publishing and recording, the caller scans the topic for
the ids it had in flight instead of publishing them again.

Must not import Airflow. Broker failures become :class:`BrokerUnavailable`.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from connectors.errors import BrokerUnavailable
from connectors.tls import ClientTls, kafka_kwargs

log = logging.getLogger(__name__)

ID_HEADER = "message-id"


@dataclass(frozen=True)
class FeedMessage:
    topic: str
    key: str
    message_id: str
    value: bytes


@dataclass(frozen=True)
class Published:
    message_id: str
    partition: int
    offset: int


class TopicCreator:
    """Creates the topics a publisher writes to (``partitions`` each, replication 1),
    asking the broker once per topic in the publisher's life. Shared by
    :class:`FeedPublisher` and :class:`connectors.kafka_batch.BatchPublisher`."""

    def __init__(
        self, bootstrap: str, partitions: int, *, client_id: str, tls: ClientTls | None = None
    ) -> None:
        self.bootstrap = bootstrap
        self.partitions = partitions
        self._client_id = client_id
        self._tls = tls
        self._known: set[str] = set()
        self._admin: KafkaAdminClient | None = None

    def ensure(self, topics: Iterable[str]) -> None:
        missing = sorted(set(topics) - self._known)
        if not missing:
            return
        # One admin client for the publisher's lifetime: closing a kafka-python
        # admin client while the producer is open stalled the producer's
        # sends against the embedded broker (seen with kafka-python 3.0).
        if self._admin is None:
            try:
                self._admin = KafkaAdminClient(
                    bootstrap_servers=self.bootstrap,
                    client_id=self._client_id,
                    **kafka_kwargs(self._tls),
                )
            except (KafkaError, ssl.SSLError) as exc:
                raise BrokerUnavailable(
                    f"Kafka broker {self.bootstrap} is unreachable ({exc})"
                ) from exc
        try:
            # One topic per request: "already exists" then concerns that topic only.
            created = 0
            for name in missing:
                try:
                    self._admin.create_topics([NewTopic(name, self.partitions, 1)])
                    created += 1
                except TopicAlreadyExistsError:
                    pass
            if created:
                log.info("broker %s: created %d topics", self.bootstrap, created)
        except KafkaError as exc:
            raise BrokerUnavailable(f"creating topics on {self.bootstrap} failed ({exc})") from exc
        self._known.update(missing)

    def close(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None


class FeedPublisher:
    """Producer (acks=all, no internal retries) bound to one broker."""

    def __init__(
        self,
        bootstrap: str,
        *,
        partitions: int = 3,
        client_id: str = "ehub-feeds",
        tls: ClientTls | None = None,
    ):
        self.bootstrap = bootstrap
        self.partitions = partitions
        self._tls = tls
        self._topics = TopicCreator(bootstrap, partitions, client_id=f"{client_id}-admin", tls=tls)
        try:
            self._producer = KafkaProducer(
                **kafka_kwargs(tls),
                bootstrap_servers=bootstrap,
                client_id=client_id,
                acks="all",
                # No producer-side retries and no idempotent producer: a send
                # either is acknowledged or fails, and a failed batch stays
                # "sending" in the outbox until a topic scan settles it
                # (exactly-once through the outbox, whatever the broker supports;
                # the embedded tansu broker mishandles idempotent producers).
                enable_idempotence=False,
                retries=0,
                max_in_flight_requests_per_connection=1,
                linger_ms=5,
                request_timeout_ms=15000,
            )
        except KafkaError as exc:
            raise BrokerUnavailable(
                f"Kafka broker {bootstrap} is unreachable ({exc}); check EHUB_BROKER "
                "(dev: `ehub dev up`)"
            ) from exc

    def ensure_topics(self, topics: Iterable[str]) -> None:
        self._topics.ensure(topics)

    def publish(self, messages: Sequence[FeedMessage]) -> list[Published]:
        """Send and wait for every acknowledgement; all or an exception."""
        self.ensure_topics(m.topic for m in messages)
        try:
            futures = [
                (
                    m.message_id,
                    self._producer.send(
                        m.topic,
                        key=m.key.encode(),
                        value=m.value,
                        headers=[(ID_HEADER, m.message_id.encode())],
                    ),
                )
                for m in messages
            ]
            self._producer.flush(timeout=30)
            out = []
            for mid, fut in futures:
                md = fut.get(timeout=30)
                out.append(Published(mid, md.partition, md.offset))
        except KafkaError as exc:
            raise BrokerUnavailable(
                f"publishing {len(messages)} messages to {self.bootstrap} failed ({exc}); "
                "they stay pending and are re-published after a topic scan"
            ) from exc
        log.info("broker %s: published %d messages", self.bootstrap, len(out))
        return out

    def scan_ids(self, topics: Iterable[str], *, poll_ms: int = 500) -> dict[str, Published]:
        """Every message id present on ``topics`` (used only in crash recovery)."""
        return scan_ids(self.bootstrap, topics, poll_ms=poll_ms, tls=self._tls)

    def close(self) -> None:
        try:
            self._producer.close(timeout=10)
        finally:
            self._topics.close()


def scan_ids(
    bootstrap: str,
    topics: Iterable[str],
    *,
    poll_ms: int = 500,
    tls: ClientTls | None = None,
) -> dict[str, Published]:
    """Read ``topics`` from the beginning with a group-less consumer; map id -> position."""
    found: dict[str, Published] = {}
    try:
        consumer = KafkaConsumer(
            **kafka_kwargs(tls), bootstrap_servers=bootstrap, enable_auto_commit=False,
            group_id=None,
        )  # fmt: skip
    except (KafkaError, ssl.SSLError) as exc:
        raise BrokerUnavailable(f"Kafka broker {bootstrap} is unreachable ({exc})") from exc
    try:
        existing = consumer.topics()
        tps = []
        for topic in topics:
            if topic not in existing:
                continue
            for p in consumer.partitions_for_topic(topic) or ():
                tps.append(TopicPartition(topic, p))
        if not tps:
            return found
        consumer.assign(tps)
        consumer.seek_to_beginning()
        empty_polls = 0
        while empty_polls < 2:
            batch = consumer.poll(timeout_ms=poll_ms)
            if not batch:
                empty_polls += 1
                continue
            empty_polls = 0
            for tp, records in batch.items():
                for rec in records:
                    for name, value in rec.headers or ():
                        if name == ID_HEADER:
                            found[value.decode()] = Published(
                                value.decode(), tp.partition, rec.offset
                            )
    finally:
        consumer.close()
    return found
