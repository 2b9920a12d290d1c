"""Kafka source: a department's event topic, read with kafka-python in bounded runs.

:class:`KafkaSource` implements :class:`connectors.source.Source`. It assigns
itself every partition of the topic (no group join: no rebalances), seeks to
the hub's cursor and reads what the topic held when ``read`` started, in
batches of at most ``batch_size`` records, then returns.

Cursor (the watermark the hub stores), a JSON object of every partition's next
offset::

    {"0": 120, "1": 98, "2": 131}

The hub's cursor is the source of truth. Without one, each partition starts at
the consumer group's committed offset, else at ``auto_offset_reset``; a
partition missing from a stored cursor (added later) starts at its committed
offset, else at its beginning. An offset that retention already deleted starts
at the beginning (logged). ``commit(batch)`` commits the batch's offsets to the
group, so the usual consumer-lag monitoring works; a failed group commit is
logged, not raised (the stored cursor already holds the position).

End of a run: per partition, the larger of the end offset listed when ``read``
started and the high watermark of its first fetch (some Kafka-protocol brokers
list the base offset of the last record batch, not its end). Records past it
are left for the next run.

Values are JSON objects in ``encoding``. A value that does not decode or is not
a JSON object does not fail the run: its record carries
``{"__raw__": <text, undecodable bytes replaced>, "__error__": "invalid JSON: ..."}``
so the hub quarantines it. Key: ``key_field`` of the value, else the Kafka key,
else ``<partition>:<offset>``; version: ``<partition>:<offset>``.

Must not import Airflow, join a consumer group (no subscribe), log values, or
log the SASL password.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from connectors.errors import SourceRejected, SourceUnavailable
from connectors.source import SourceBatch, SourceRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class KafkaSourceSpec:
    """Which topic to read and how to reach the broker."""

    name: str
    """Source id, used in every message (``<department>.<source>``)."""
    bootstrap_servers: str
    """``host:port[,host:port…]``."""
    topic: str
    group_id: str
    """Consumer group that receives the committed offsets (lag monitoring)."""
    key_field: str | None = None
    """Dotted path of the record key in the value; else the Kafka key."""
    encoding: str = "utf-8"
    """Text encoding of values and keys."""
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    """Where to start without a cursor and without group offsets."""
    batch_size: int = 200
    poll_timeout_ms: int = 1000
    max_idle_polls: int = 15
    """Empty polls in a row, before the run's end is reached, that mean the broker stalls."""
    metadata_timeout_s: float = 10.0
    """How long to wait for the topic's partitions to appear in the metadata."""
    request_timeout_ms: int = 15000
    client_id: str = "ehub-source"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    """Secret from the Airflow connection; never logged, never in repr."""
    ssl_cafile: str | None = None


class KafkaSource:
    """Bounded reader of one topic. See the module docstring for cursor and end of run."""

    def __init__(self, spec: KafkaSourceSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self._consumer: KafkaConsumer | None = None

    # -- the Source protocol ---------------------------------------------------------

    def read(self, cursor: str | None) -> Iterator[SourceBatch]:
        """Yield batches from the cursor up to what the topic held when the run began."""
        s = self.spec
        stored = self._parse(cursor)
        consumer = self._connect()
        try:
            tps = self._partitions(consumer)
            consumer.unsubscribe()  # a fresh assignment: no paused state or old high watermark
            consumer.assign(tps)
            ends = consumer.end_offsets(tps)
            nxt = self._seek(consumer, tps, stored, ends)
        except KafkaError as exc:
            raise self._unavailable("listing offsets", exc) from exc
        log.info(
            "source %s: topic %s, %d partitions, from %s to %s",
            self.name,
            s.topic,
            len(tps),
            nxt,
            {tp.partition: ends[tp] for tp in tps},
        )
        targets: dict[TopicPartition, int] = {}
        done: set[TopicPartition] = set()
        idle = 0
        while len(done) < len(tps):
            try:
                polled = consumer.poll(timeout_ms=s.poll_timeout_ms, max_records=s.batch_size)
            except KafkaError as exc:
                raise self._unavailable("polling", exc) from exc
            for tp in tps:
                hw = consumer.highwater(tp)
                if tp not in targets and hw is not None:
                    targets[tp] = max(ends[tp], hw)
            records: list[SourceRecord] = []
            touched: dict[int, int] = {}
            for tp, messages in polled.items():
                for m in messages:
                    if m.offset >= targets.get(tp, ends[tp]):
                        break  # past the end of this run: the next run reads it
                    records.append(self._record(m))
                    nxt[tp.partition] = touched[tp.partition] = m.offset + 1
            finished = [
                tp
                for tp in tps
                if tp not in done and tp in targets and consumer.position(tp) >= targets[tp]
            ]
            if finished:
                consumer.pause(*finished)
                done.update(finished)
            idle = 0 if records or finished else idle + 1
            if idle > s.max_idle_polls:
                waiting = sorted(tp.partition for tp in tps if tp not in done)
                raise SourceUnavailable(
                    f"source {self.name}: no progress on topic {s.topic} partitions {waiting} "
                    f"after {idle} polls at {s.bootstrap_servers}; check the broker, then re-run"
                )
            if not records:
                continue
            errors = sum(1 for r in records if "__error__" in r.payload)
            log.info(
                "source %s: poll -> %d records (%d invalid) from partitions %s",
                self.name,
                len(records),
                errors,
                sorted(touched),
            )
            cur = json.dumps({str(p): o for p, o in sorted(nxt.items())})
            yield SourceBatch(records=records, cursor=cur, context={"offsets": touched})

    def commit(self, batch: SourceBatch) -> None:
        """Commit the batch's offsets to the consumer group (lag monitoring)."""
        offsets = batch.context.get("offsets") or {}
        if not offsets or self._consumer is None:
            return
        try:
            self._consumer.commit(
                {
                    TopicPartition(self.spec.topic, int(p)): OffsetAndMetadata(int(o), "", -1)
                    for p, o in offsets.items()
                }
            )
        except KafkaError as exc:
            log.warning(
                "source %s: committing group %s offsets failed (%s); the hub's cursor "
                "still holds the position, only lag monitoring is behind",
                self.name,
                self.spec.group_id,
                type(exc).__name__,
            )
            return
        log.info("source %s: committed group offsets %s", self.name, offsets)

    def close(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            consumer.close(autocommit=False)

    # -- helpers ---------------------------------------------------------------------

    def _connect(self) -> KafkaConsumer:
        if self._consumer is not None:
            return self._consumer
        s = self.spec
        try:
            self._consumer = KafkaConsumer(
                bootstrap_servers=s.bootstrap_servers.split(","),
                group_id=s.group_id,
                client_id=s.client_id,
                enable_auto_commit=False,
                auto_offset_reset=s.auto_offset_reset,
                max_poll_records=s.batch_size,
                request_timeout_ms=s.request_timeout_ms,
                security_protocol=s.security_protocol,
                sasl_mechanism=s.sasl_mechanism,
                sasl_plain_username=s.sasl_username,
                sasl_plain_password=s.sasl_password,
                ssl_cafile=s.ssl_cafile,
            )
        except KafkaError as exc:
            raise self._unavailable("connecting", exc) from exc
        return self._consumer

    def _partitions(self, consumer: KafkaConsumer) -> list[TopicPartition]:
        deadline = time.monotonic() + self.spec.metadata_timeout_s
        while True:
            parts = consumer.partitions_for_topic(self.spec.topic)
            if parts:
                return [TopicPartition(self.spec.topic, p) for p in sorted(parts)]
            if time.monotonic() > deadline:
                raise SourceRejected(
                    f"source {self.name}: topic {self.spec.topic} not found on "
                    f"{self.spec.bootstrap_servers}; check topic in the source spec, or wait "
                    "until the department has created it"
                )
            time.sleep(0.2)

    def _seek(
        self,
        consumer: KafkaConsumer,
        tps: list[TopicPartition],
        stored: dict[int, int] | None,
        last: dict[TopicPartition, int],
    ) -> dict[int, int]:
        """Seek every partition to its start; return partition → next offset."""
        first = consumer.beginning_offsets(tps)
        out: dict[int, int] = {}
        for tp in tps:
            if stored is not None and tp.partition in stored:
                off = stored[tp.partition]
            else:
                committed = consumer.committed(tp)
                if committed is not None:
                    off = committed
                elif stored is None and self.spec.auto_offset_reset == "latest":
                    off = last[tp]
                else:
                    off = first[tp]
            if off < first[tp]:
                log.warning(
                    "source %s: partition %d offsets %d..%d expired before being read",
                    self.name,
                    tp.partition,
                    off,
                    first[tp] - 1,
                )
                off = first[tp]
            consumer.seek(tp, off)
            out[tp.partition] = off
        return out

    def _record(self, m: Any) -> SourceRecord:
        enc = self.spec.encoding
        version = f"{m.partition}:{m.offset}"
        payload: dict[str, Any]
        error = None
        text: str | None = None
        if m.value is None:
            error = "invalid JSON: the message has no value"
        else:
            try:
                text = m.value.decode(enc)
            except UnicodeDecodeError as exc:
                text = m.value.decode(enc, "replace")
                error = f"invalid JSON: bytes at {exc.start} do not decode as {enc}"
        if error is None and text is not None:
            try:
                value = json.loads(text)
            except ValueError as exc:
                error = f"invalid JSON: {exc}"
            else:
                if isinstance(value, dict):
                    payload = value
                else:
                    error = f"invalid JSON: expected an object, got {type(value).__name__}"
        if error is not None:
            payload = {"__raw__": text, "__error__": error}
        key = _path(payload, self.spec.key_field) if error is None else None
        if key is None or isinstance(key, dict | list) or key == "":
            key = m.key.decode(enc, "replace") if m.key is not None else version
        return SourceRecord(key=str(key), version=version, payload=payload)

    def _parse(self, cursor: str | None) -> dict[int, int] | None:
        if not cursor:
            return None
        try:
            return {int(p): int(o) for p, o in json.loads(cursor).items()}
        except (ValueError, TypeError, AttributeError) as exc:
            raise SourceRejected(
                f"source {self.name}: stored cursor {cursor[:80]!r} is not a Kafka cursor "
                '{"<partition>": <next offset>}; reset the source\'s watermark'
            ) from exc

    def _unavailable(self, doing: str, exc: Exception) -> SourceUnavailable:
        return SourceUnavailable(
            f"source {self.name}: {doing} topic {self.spec.topic} at "
            f"{self.spec.bootstrap_servers} failed ({type(exc).__name__}: {exc}); check that "
            "the broker is up and reachable, then re-run"
        )


def _path(obj: Any, path: str | None) -> Any:
    if not path:
        return None
    for part in path.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj
