"""An office's own reader of its return feed (``ehub office consume``): topic → files.

For a county or township data team: reads ``<prefix><office code>``, checks every
envelope (JSON, the hub's signature with the hub's feed certificate, addressed to
this office, ``schemas/return_envelope.schema.json``), and appends it to files in
the output folder:

- ``partition-<n>.jsonl`` — one file per partition of the topic, one JSON line
  per accepted message: ``{"topic", "partition", "offset", "key", "timestamp",
  "envelope"}`` (the envelope as the hub signed it, so it can be verified again).
  Offsets only grow within a file, and the hub keys messages by record
  identifier, so a record's versions are in order within one file.
- ``rejects.jsonl`` — one line per refused message: topic, partition, offset,
  key, ``reason`` and the value as text (at most 64 KiB).
- ``consumer.json`` — the office, topic and consumer group the folder belongs to
  (a folder never mixes two topics).

**The files are the source of truth.** Lines of a poll are written, flushed and
fsynced; only then are the offsets committed to the consumer group. On start,
the tail of every file is read: a torn last line (no newline, or not a complete
record — a kill during a write) is cut off, and each partition resumes after
the highest offset found in its file and in the rejects. A crash between write
and commit therefore repeats nothing: the group offset is behind, the files are
not, and the files win. A partition with no line yet starts at the group's
committed offset (files moved away after loading), else at the beginning. A
reject is made durable together with everything before it, before anything
after it is written, so a power cut cannot lose it behind a later line.

The group offsets exist for monitoring: ``ehub office status`` shows each
office's lag (end offset − committed offset) with :func:`consumer_lag`. The
consumer assigns itself the topic's partitions (present at start) instead of
joining the group: no rebalance wait, and tansu serves OffsetCommit and
OffsetFetch for a group nobody joined. tansu lists as a partition's end offset
the base offset of its last record batch (+1), so the end is taken from a
fetch's high watermark.

The output folder's files are handled by :mod:`ehub.office_consume_files`.
``EHUB_FAULT=consume:<n>:before`` (tests only) ends the process after the n-th
poll's lines are fsynced and before its offsets are committed.

Must not log record contents or key material; must not import Airflow.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import ssl
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from cryptography import x509

from connectors.tls import ClientTls, kafka_kwargs
from ehub.errors import BrokerUnavailable, ConfigError
from ehub.feeds import verify_envelope
from ehub.office_consume_files import (
    REJECTS_FILE,
    STATE_FILE,
    Writer,
    fsync_dir,
    partition_file,
    resume_points,
)

log = logging.getLogger(__name__)

GROUP_PREFIX = "ehub-office-"
MAX_REJECT_VALUE = 65536


def group_for(office: str) -> str:
    """The consumer group ``ehub office consume`` commits to (and ``status`` reads)."""
    return GROUP_PREFIX + office


def load_certs(path: Path) -> list[x509.Certificate]:
    """The hub's feed certificate(s) from a PEM file (several during a key rollover)."""
    try:
        certs = x509.load_pem_x509_certificates(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"--hub-cert {path}: cannot read ({exc.strerror})") from exc
    except ValueError as exc:
        raise ConfigError(f"--hub-cert {path}: not a PEM certificate ({exc})") from exc
    return certs


@dataclass(frozen=True, kw_only=True)
class ConsumeSpec:
    """What to read, how to check it, and where to write it."""

    office: str
    """Office code; messages addressed to another office are rejected."""
    topic: str
    out_dir: Path
    broker: str
    """``host:port[,host:port…]``."""
    tls: ClientTls | None = None
    """TLS to the broker (its CA, the office's client certificate and key): the
    production broker's office listener requires it; None = plaintext."""
    certs: tuple[x509.Certificate, ...]
    """The hub's feed certificate(s) (``ehub office feed-cert`` on the hub)."""
    group: str
    max_messages: int | None = None
    """Stop after this many messages (accepted + rejected) in this run."""
    idle_exit_s: float | None = None
    """Stop after this many seconds without a message; None = run until signalled."""
    batch_size: int = 500
    poll_timeout_ms: int = 500
    fault: str = ""
    """Crash injection for tests (``EHUB_FAULT=consume:<n>:before``: exit after the
    n-th poll's lines are fsynced, before its offsets are committed)."""
    schema: dict[str, Any] | None = field(default=None, repr=False)
    """The envelope's JSON Schema; None = ``schemas/return_envelope.schema.json``."""


@dataclass(frozen=True)
class ConsumeResult:
    written: int
    rejected: int
    resumed_at: dict[int, int]
    """Partition → the offset this run started at."""
    next_offsets: dict[int, int]
    """Partition → the offset the next run starts at."""
    repaired: tuple[str, ...]
    """Files whose torn last line was cut off."""


# --- checking a message -----------------------------------------------------------


def _envelope_schema() -> dict[str, Any]:
    from schemas import path as schema_path

    doc: dict[str, Any] = json.loads(schema_path("return_envelope.schema.json").read_text("utf-8"))
    return doc


def check(
    value: bytes | None, office: str, certs: Iterable[x509.Certificate], validator: Any
) -> tuple[dict[str, Any] | None, str]:
    """The envelope, or None and the reason it is refused."""
    if value is None:
        return None, "the message has no value"
    try:
        body = json.loads(value)
    except ValueError as exc:
        return None, f"not JSON: {exc}"
    if not isinstance(body, dict):
        return None, f"not a JSON object but {type(body).__name__}"
    certs = list(certs)
    if not verify_envelope(value, certs):
        sig = body.get("signature")
        named = sig.get("cert_sha256") if isinstance(sig, dict) else None
        known = {_sha256(c) for c in certs}
        if named is not None and named not in known:
            return None, f"signed with an unknown certificate (cert_sha256 {str(named)[:16]}…)"
        return None, "signature does not verify with the hub's feed certificate"
    if body.get("office") != office:
        return None, f"addressed to office {body.get('office')!r}, not {office!r}"
    error = next(iter(validator.iter_errors(body)), None)
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(envelope)"
        return None, f"schema: {where}: {error.message[:300]}"
    return body, ""


def _sha256(cert: x509.Certificate) -> str:
    import hashlib

    from cryptography.hazmat.primitives.serialization import Encoding

    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


def _dumps(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, ensure_ascii=False, sort_keys=True) + "\n").encode()


def _claim_folder(spec: ConsumeSpec) -> None:
    spec.out_dir.mkdir(parents=True, exist_ok=True)
    state = spec.out_dir / STATE_FILE
    want = {"office": spec.office, "topic": spec.topic, "group": spec.group}
    if state.exists():
        try:
            have = json.loads(state.read_text("utf-8"))
        except ValueError as exc:
            raise ConfigError(f"{state}: unreadable ({exc}); is this a consume folder?") from exc
        if have.get("topic") != spec.topic:
            raise ConfigError(
                f"--out {spec.out_dir} holds topic {have.get('topic')!r}, not {spec.topic!r}: "
                "give each office its own folder"
            )
        return
    tmp = state.with_suffix(".tmp")
    tmp.write_text(json.dumps(want, ensure_ascii=False, indent=1), "utf-8")
    os.replace(tmp, state)
    fsync_dir(spec.out_dir)


# --- the run ----------------------------------------------------------------------


def _consumer(broker: str, group: str, tls: ClientTls | None = None) -> Any:
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    security = kafka_kwargs(tls)  # a bad CA or key file fails here, naming the setting
    try:
        return KafkaConsumer(
            **security,
            bootstrap_servers=broker.split(","),
            group_id=group,
            client_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            request_timeout_ms=15000,
        )
    except (KafkaError, ssl.SSLError) as exc:  # a certificate refused: no KafkaError
        how = "over TLS: check --broker, --ca, --cert and --key" if tls else "check --broker"
        raise BrokerUnavailable(
            f"Kafka broker {broker} is unreachable ({type(exc).__name__}); {how}"
        ) from exc


class _Stop:
    """SIGTERM / SIGINT end the run after the current poll is written and committed."""

    def __init__(self) -> None:
        self.asked = False
        self._previous: dict[int, Any] = {}

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.asked = True

    def __enter__(self) -> _Stop:
        try:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self)
        except ValueError:  # not the main thread: no handlers
            pass
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _partitions(consumer: Any, spec: ConsumeSpec, stop: _Stop) -> list[Any] | None:
    """The topic's partitions; waits for the topic (None: idle-exit reached first)."""
    from kafka import TopicPartition

    started = time.monotonic()
    while not stop.asked:
        parts = consumer.partitions_for_topic(spec.topic)
        if parts:
            return [TopicPartition(spec.topic, p) for p in sorted(parts)]
        if spec.idle_exit_s is not None and time.monotonic() - started >= spec.idle_exit_s:
            return None
        time.sleep(0.5)
        consumer.topics()  # refresh the metadata
    return None


def consume(spec: ConsumeSpec) -> ConsumeResult:
    """Read the office's topic into ``spec.out_dir`` until idle, the limit or a signal."""
    from kafka.errors import KafkaError

    _claim_folder(spec)
    nxt, repaired = resume_points(spec.out_dir)
    run = _Run(spec, nxt)
    try:
        with _Stop() as stop:
            tps = _partitions(run.consumer, spec, stop)
            if tps is not None:
                run.start(tps)
                run.loop(stop)
    except KafkaError as exc:
        raise BrokerUnavailable(
            f"reading {spec.topic} from {spec.broker} failed ({type(exc).__name__}); "
            "re-run: it resumes after the last line written"
        ) from exc
    finally:
        run.close()
    log.info("consume %s: %d written, %d rejected, next %s",
             spec.topic, run.written, run.rejected, run.nxt)  # fmt: skip
    return ConsumeResult(run.written, run.rejected, run.resumed, dict(run.nxt), tuple(repaired))


class _Run:
    """One run of :func:`consume`: the consumer, the files and the positions."""

    def __init__(self, spec: ConsumeSpec, nxt: dict[int, int]) -> None:
        import jsonschema

        schema = spec.schema or _envelope_schema()
        self.validator = jsonschema.validators.validator_for(schema)(schema)
        self.spec = spec
        self.nxt = nxt
        """Partition → next offset to write (from the files, then advanced)."""
        self.resumed: dict[int, int] = {}
        self.written = self.rejected = self.polls = 0
        self.writer = Writer(spec.out_dir)
        self.consumer = _consumer(spec.broker, spec.group, spec.tls)

    def start(self, tps: list[Any]) -> None:
        self.consumer.assign(tps)
        first = self.consumer.beginning_offsets(tps)
        behind: dict[Any, int] = {}
        for tp in tps:
            committed = self.consumer.committed(tp)
            start = self.nxt.get(tp.partition)
            if start is None:  # nothing in the files: the group's offset, else the beginning
                start = committed if committed is not None else first[tp]
            elif start != committed:  # a crash between fsync and commit: the files win
                behind[tp] = start
            start = max(start, first[tp])
            self.consumer.seek(tp, start)
            self.resumed[tp.partition] = self.nxt[tp.partition] = start
        log.info("consume %s: group %s, starting at %s",
                 self.spec.topic, self.spec.group, self.resumed)  # fmt: skip
        if behind:
            self._commit_group(behind)

    def left(self) -> int | None:
        if self.spec.max_messages is None:
            return None
        return self.spec.max_messages - self.written - self.rejected

    def loop(self, stop: _Stop) -> None:
        spec = self.spec
        idle_since = time.monotonic()
        while not stop.asked and (self.left() is None or (self.left() or 0) > 0):
            limit = min(spec.batch_size, self.left() or spec.batch_size)
            polled = self.consumer.poll(timeout_ms=spec.poll_timeout_ms, max_records=limit)
            touched: dict[Any, int] = {}
            for tp, records in sorted(polled.items(), key=lambda kv: kv[0].partition):
                for r in records:
                    left = self.left()
                    if left is not None and left <= 0:
                        break
                    if r.offset >= self.nxt[tp.partition]:  # else already in the files
                        self._write(tp, r)
                        self.nxt[tp.partition] = touched[tp] = r.offset + 1
            if touched:
                idle_since = time.monotonic()
                self._commit(touched)
            elif spec.idle_exit_s is not None and time.monotonic() - idle_since >= spec.idle_exit_s:
                break

    def _write(self, tp: Any, r: Any) -> None:
        body, reason = check(r.value, self.spec.office, self.spec.certs, self.validator)
        key = r.key.decode("utf-8", "replace") if r.key is not None else None
        where = {"topic": tp.topic, "partition": tp.partition, "offset": r.offset, "key": key}
        if body is not None:
            line = _dumps({**where, "timestamp": r.timestamp, "envelope": body})
            self.writer.append(partition_file(self.spec.out_dir, tp.partition).name, line)
            self.written += 1
            return
        # Everything before the reject is made durable first, and the reject before
        # anything after it (see the module docstring).
        self.writer.sync()
        text = (r.value or b"")[:MAX_REJECT_VALUE].decode("utf-8", "replace")
        self.writer.append(REJECTS_FILE, _dumps({**where, "reason": reason, "value": text}))
        self.writer.sync()
        self.rejected += 1
        log.warning("consume %s: partition %d offset %d rejected: %s",
                    tp.topic, tp.partition, r.offset, reason)  # fmt: skip

    def _commit(self, touched: dict[Any, int]) -> None:
        """Files durable, then the group's offsets (only for monitoring the lag)."""
        from ehub.pipeline.faults import crash_point

        self.writer.sync()
        self.polls += 1
        crash_point(self.spec.fault, "consume", self.polls, "before")
        # Seek back past anything polled but not written (the --max-messages cut).
        for tp, off in touched.items():
            self.consumer.seek(tp, off)
        self._commit_group(touched)

    def _commit_group(self, offsets: dict[Any, int]) -> None:
        from kafka.errors import KafkaError
        from kafka.structs import OffsetAndMetadata

        try:
            self.consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()})
        except KafkaError as exc:
            log.warning(
                "consume %s: committing group %s offsets failed (%s); the files hold the "
                "position, only the lag shown by `ehub office status` is behind",
                self.spec.topic, self.spec.group, type(exc).__name__,
            )  # fmt: skip

    def close(self) -> None:
        try:
            self.writer.close()
        finally:
            self.consumer.close(autocommit=False)


# --- lag (for ``ehub office status``) ---------------------------------------------


@dataclass(frozen=True)
class Lag:
    """A group's position on a topic; a partition it never committed counts from 0."""

    topic: str
    group: str
    end: dict[int, int]
    committed: dict[int, int | None]

    @property
    def total(self) -> int:
        return sum(self.end[p] - (self.committed.get(p) or 0) for p in self.end)


def high_watermarks(consumer: Any, tps: list[Any], timeout_s: float = 5.0) -> dict[Any, int]:
    """Each partition's end offset: the larger of the listed end offset and a fetch's
    high watermark (tansu lists the base offset of the last batch, +1)."""
    ends = consumer.end_offsets(tps)
    consumer.assign(tps)
    for tp in tps:
        consumer.seek(tp, max(0, ends[tp] - 1))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        consumer.poll(timeout_ms=200, max_records=1)
        if all(consumer.highwater(tp) is not None for tp in tps):
            break
    return {tp: max(ends[tp], consumer.highwater(tp) or 0) for tp in tps}


def consumer_lag(
    broker: str, topics: dict[str, str], tls: ClientTls | None = None
) -> Iterator[tuple[str, Lag | None]]:
    """Per office (``office → topic``): its group's lag, or None when the topic does not
    exist yet. :class:`BrokerUnavailable` when the broker cannot be reached."""
    from kafka import TopicPartition
    from kafka.errors import KafkaError

    for office, topic in topics.items():
        group = group_for(office)
        consumer = _consumer(broker, group, tls)
        try:
            parts = consumer.partitions_for_topic(topic)
            if not parts:
                yield office, None
                continue
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            committed = {tp.partition: consumer.committed(tp) for tp in tps}
            ends = high_watermarks(consumer, tps)
            yield office, Lag(topic, group, {tp.partition: e for tp, e in ends.items()}, committed)
        except KafkaError as exc:
            raise BrokerUnavailable(
                f"reading offsets of {topic} from {broker} failed ({type(exc).__name__})"
            ) from exc
        finally:
            consumer.close(autocommit=False)
