"""Publish shards on PostgreSQL and a broker of the test's own: a backlog dealt by office
among forked processes is published exactly once (each row, each message), in id
order on each office's topic, with its audit events; a shard that fails leaves its
rows to the next run, which settles them by a topic scan; the publish lease held by
a process stays held while a process forked from it lives."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kafka import KafkaConsumer, TopicPartition
from sqlalchemy import func, select

from connectors.kafka_batch import BatchPublisher
from connectors.kafka_feed import FeedMessage, Published
from ehub.audit import verify_chain
from ehub.bench_feeds import add_routed
from ehub.config import Settings
from ehub.errors import BrokerUnavailable
from ehub.offices_dev import ensure_dev_offices
from ehub.pipeline import publish
from ehub.pipeline.publish_lease import PublishLease, PublishLeaseBusy
from ehub.pipeline.publish_shards import plan_shards
from ehub.store.db import Store
from ehub.store.models import AuditEvent, FeedMessageRow
from tests.conftest import tansu_broker

PREFIX = "ehub.return.office."


@given(st.dictionaries(st.text(min_size=1, max_size=8), st.integers(0, 10_000), max_size=40),
       st.integers(1, 6))  # fmt: skip
def test_every_office_is_in_exactly_one_shard(pending: dict[str, int], workers: int) -> None:
    shards = plan_shards(pending, workers)
    assert len(shards) <= workers and all(shards)
    seen = Counter(o for shard in shards for o in shard)
    assert set(seen) == set(pending) and set(seen.values()) <= {1}
    if len(pending) >= workers:
        assert len(shards) == workers
    loads = sorted(sum(pending[o] for o in shard) for shard in shards)
    if loads:  # dealt largest first to the lightest: within one office of each other
        assert loads[-1] - loads[0] <= max(pending.values())


@pytest.fixture
def own_broker() -> Iterator[str]:
    with tansu_broker() as address:
        yield address


def _setup(tmp_path: Path, url: str, broker: str, licenses: int) -> tuple[Settings, Store, int]:
    settings = replace(
        Settings.from_env(home=tmp_path / "home", out_dir=tmp_path / "out", database_url=url,
                          broker=broker, batch_size=40),
        return_topic_prefix=PREFIX,
    )  # fmt: skip
    store = Store(url)
    store.migrate()
    ensure_dev_offices(store)
    return settings, store, add_routed(store, PREFIX, licenses)


def _on_broker(broker: str) -> dict[str, list[tuple[int, int, str]]]:
    """Per topic, every message as (partition, offset, message id)."""
    c = KafkaConsumer(bootstrap_servers=broker, enable_auto_commit=False)
    tps = [TopicPartition(t, p) for t in c.topics() if t.startswith(PREFIX)
           for p in c.partitions_for_topic(t) or ()]  # fmt: skip
    out: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
    c.assign(tps)
    c.seek_to_beginning()
    empty = 0
    while empty < 3:
        batch = c.poll(timeout_ms=500)
        empty = 0 if batch else empty + 1
        for tp, recs in batch.items():
            for r in recs:
                out[tp.topic].append(
                    (tp.partition, r.offset, dict(r.headers)["message-id"].decode())
                )
    c.close()
    return out


def _check_exactly_once_in_order(store: Store, broker: str, expected: int) -> None:
    with store.session() as s:
        states = dict(s.execute(select(FeedMessageRow.state, func.count())
                                .group_by(FeedMessageRow.state)).all())  # fmt: skip
        rows = s.execute(select(FeedMessageRow.id, FeedMessageRow.topic, FeedMessageRow.message_id,
                                FeedMessageRow.partition, FeedMessageRow.offset)).all()  # fmt: skip
        returned = s.scalar(select(func.count()).select_from(AuditEvent)
                            .where(AuditEvent.event == "returned"))  # fmt: skip
        assert verify_chain(s) == []
    assert states == {"published": expected}
    assert returned == expected
    on_broker = _on_broker(broker)
    ids = Counter(mid for msgs in on_broker.values() for _p, _o, mid in msgs)
    assert len(ids) == expected and set(ids.values()) == {1}
    where = {mid: (topic, p, o) for topic, msgs in on_broker.items() for p, o, mid in msgs}
    by_partition: dict[tuple[str, int | None], list[tuple[int | None, int]]] = defaultdict(list)
    for row_id, topic, mid, partition, offset in rows:
        assert where[mid] == (topic, partition, offset)  # marked where the broker put it
        by_partition[topic, partition].append((offset, row_id))
    for placed in by_partition.values():  # each office's partition in id order
        assert [r for _o, r in sorted(placed)] == sorted(r for _o, r in placed)


def test_a_sharded_backlog_is_published_exactly_once_in_order(
    tmp_path: Path, pg_url: str, own_broker: str
) -> None:
    settings, store, expected = _setup(tmp_path, pg_url, own_broker, 900)
    result = publish.run(settings, store, workers=2, min_parallel=100)
    assert result.counts["published"] == expected and result.batches > 2
    assert publish.run(settings, store, workers=2, min_parallel=100).counts["published"] == 0
    _check_exactly_once_in_order(store, own_broker, expected)
    store.dispose()


def test_a_small_backlog_is_not_sharded(
    tmp_path: Path, pg_url: str, own_broker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ehub.pipeline import forks

    settings, store, expected = _setup(tmp_path, pg_url, own_broker, 60)
    monkeypatch.setattr(forks.multiprocessing, "get_context", None)  # would fail
    assert publish.run(settings, store, workers=2).counts["published"] == expected
    _check_exactly_once_in_order(store, own_broker, expected)
    store.dispose()


def test_a_failed_shard_is_settled_by_the_next_run(
    tmp_path: Path, pg_url: str, own_broker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, store, expected = _setup(tmp_path, pg_url, own_broker, 900)
    with store.session() as s:
        busiest = s.execute(select(FeedMessageRow.office, func.count())
                            .group_by(FeedMessageRow.office)
                            .order_by(func.count().desc())).first()  # fmt: skip
    assert busiest is not None
    doomed = PREFIX + str(busiest[0])

    class HalfThenFail(BatchPublisher):
        """The shard with the busiest office: its second batch half sent, then the link drops."""

        calls = 0

        def publish(self, messages: Sequence[FeedMessage]) -> list[Published]:
            if any(m.topic == doomed for m in messages):
                HalfThenFail.calls += 1  # per process: each shard counts its own
                if HalfThenFail.calls == 2:
                    super().publish(messages[: len(messages) // 2])
                    raise BrokerUnavailable("connection reset by test")
            return super().publish(messages)

    monkeypatch.setattr(publish, "BatchPublisher", HalfThenFail)  # inherited by the forks
    with pytest.raises(BrokerUnavailable, match="reset by test"):
        publish.run(settings, store, workers=2, min_parallel=100, attempts=1)
    with store.session() as s:
        sending = s.scalar(select(func.count()).select_from(FeedMessageRow)
                           .where(FeedMessageRow.state == "sending"))  # fmt: skip
    assert sending  # the failed shard's batch (and the one claimed ahead) in flight
    monkeypatch.undo()
    result = publish.run(settings, store, workers=2, min_parallel=100)
    assert result.counts["recovered"] == settings.batch_size // 2  # found on the broker
    _check_exactly_once_in_order(store, own_broker, expected)
    store.dispose()


def test_an_interrupted_run_ends_its_shards_before_the_lease(
    tmp_path: Path, pg_url: str, own_broker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import multiprocessing

    from ehub.pipeline import forks

    settings, store, expected = _setup(tmp_path, pg_url, own_broker, 900)

    def interrupted(running: object, died: object, failed: object) -> None:
        time.sleep(0.5)  # the shards under way
        raise KeyboardInterrupt  # the task killed while it waits for them

    monkeypatch.setattr(forks, "_collect", interrupted)
    with pytest.raises(KeyboardInterrupt):
        publish.run(settings, store, workers=2, min_parallel=100)
    assert multiprocessing.active_children() == []  # none outlives the lease
    monkeypatch.undo()
    assert publish.run(settings, store, workers=2, min_parallel=100).counts["published"] <= expected
    _check_exactly_once_in_order(store, own_broker, expected)
    store.dispose()


_HOLD_AND_FORK = """
import os, sys, time
from ehub.pipeline.publish_lease import PublishLease
from ehub.store.db import Store
lease = PublishLease(Store(sys.argv[1]))
lease.acquire(wait=10)
if os.fork() == 0:  # the child keeps the inherited connection, never uses it
    time.sleep(float(sys.argv[2]))
    os._exit(0)
print("held", flush=True)
os._exit(0)  # the parent dies abruptly, the lease not released
"""


def test_the_lease_is_held_while_a_forked_process_lives(pg_url: str) -> None:
    store = Store(pg_url)
    store.migrate()
    try:
        holder = subprocess.Popen([sys.executable, "-c", _HOLD_AND_FORK, pg_url, "6"],
                                  stdout=subprocess.PIPE, text=True)  # fmt: skip
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert holder.wait(timeout=30) == 0
        holder.stdout.close()
        started = time.monotonic()
        with pytest.raises(PublishLeaseBusy):  # its parent is gone, the fork is not
            PublishLease(store).acquire(wait=1)
        assert time.monotonic() - started < 5
        lease = PublishLease(store)
        lease.acquire(wait=30)  # free once the fork has ended
        assert time.monotonic() - started > 3
        lease.release()
    finally:
        store.dispose()
