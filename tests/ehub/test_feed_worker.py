"""The continuous feed publisher (`ehub feeds worker`) on PostgreSQL and a broker of its own:
killed with SIGKILL during publication and restarted, beside the DAG's publish task,
and within a moment of a commit. Every message is counted on the broker by a
kafka-python reader: each exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition
from sqlalchemy import func, select

from ehub.bench_feeds import add_routed
from ehub.config import Settings
from ehub.feed_worker import serve
from ehub.offices_dev import ensure_dev_offices
from ehub.pipeline import publish
from ehub.store.db import Store
from ehub.store.models import FeedMessageRow
from tests.conftest import tansu_broker

PREFIX = "ehub.return.office."  # the default: the worker subprocess uses it


@pytest.fixture
def own_broker() -> Iterator[str]:
    """A broker of the test's own: the worker subprocess uses the default topic names."""
    with tansu_broker() as address:
        yield address


def _settings(tmp_path: Path, url: str, broker: str) -> Settings:
    return replace(
        Settings.from_env(
            home=tmp_path / "home",
            out_dir=tmp_path / "out",
            database_url=url,
            broker=broker,
            batch_size=200,
        ),
        return_topic_prefix=PREFIX,
    )


def _store(settings: Settings, licenses: int, first: int = 0) -> tuple[Store, int]:
    store = Store(settings.database_url)
    store.migrate()
    ensure_dev_offices(store)
    return store, add_routed(store, PREFIX, licenses, first=first)


def _states(store: Store) -> Counter[str]:
    with store.session() as s:
        rows = s.execute(
            select(FeedMessageRow.state, func.count()).group_by(FeedMessageRow.state)
        ).all()
    return Counter({state: n for state, n in rows})


def _on_broker(broker: str) -> Counter[str]:
    """Every message id on the offices' topics, with how often it is there."""
    c = KafkaConsumer(bootstrap_servers=broker, enable_auto_commit=False)
    tps = [
        TopicPartition(t, p)
        for t in c.topics()
        if t.startswith(PREFIX)
        for p in c.partitions_for_topic(t) or ()
    ]
    ids: Counter[str] = Counter()
    c.assign(tps)
    c.seek_to_beginning()
    empty = 0
    while empty < 3:
        batch = c.poll(timeout_ms=500)
        empty = 0 if batch else empty + 1
        for recs in batch.values():
            for r in recs:
                ids[dict(r.headers)["message-id"].decode()] += 1
    c.close()
    return ids


def _worker(settings: Settings, *extra: str, fault: str = "") -> subprocess.Popen[bytes]:
    env = {**os.environ, "EHUB_HOME": str(settings.home),
           "EHUB_DATABASE_URL": settings.database_url, "EHUB_BROKER": settings.broker,
           "EHUB_FAULT": fault}  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-m", "ehub", "feeds", "worker", "--batch", "200", *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip


def _wait_until(cond: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _check_exactly_once(store: Store, broker: str, expected: int) -> None:
    assert _states(store) == Counter({"published": expected})
    ids = _on_broker(broker)
    assert len(ids) == expected
    assert set(ids.values()) == {1}, [i for i, n in ids.items() if n > 1][:3]
    with store.session() as s:
        stored = set(s.scalars(select(FeedMessageRow.message_id)))
    assert stored == set(ids)


def _stop(proc: subprocess.Popen[bytes]) -> str:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    return out.decode(errors="replace")


def test_killed_after_the_ack_before_the_marks_then_restarted(
    tmp_path: Path, pg_url: str, own_broker: str
) -> None:
    settings = _settings(tmp_path, pg_url, own_broker)
    store, expected = _store(settings, 1000)
    # SIGKILL-like exit right after the broker acknowledged batch 3, before it is marked.
    first = _worker(settings, fault="publish:3:acked")
    assert first.wait(timeout=180) == 137, first.communicate()[0][-2000:]
    states = _states(store)
    # Batches 1-2 marked; batch 3 on the broker but "sending" (and batch 4, claimed
    # ahead while batch 3 was sent, "sending" too, never sent).
    assert states["published"] == 400 and states["sending"] in (200, 400), states
    second = _worker(settings)
    try:
        _wait_until(lambda: _states(store)["published"] == expected, 180, "every row published")
    finally:
        out = _stop(second)
    assert second.returncode == 0, out[-2000:]
    _check_exactly_once(store, own_broker, expected)
    store.dispose()


def test_sigkill_at_any_moment_then_restarted(tmp_path: Path, pg_url: str, own_broker: str) -> None:
    settings = _settings(tmp_path, pg_url, own_broker)
    store, expected = _store(settings, 3000)
    first = _worker(settings)
    try:
        _wait_until(lambda: _states(store)["published"] >= 600, 180, "publication under way")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    assert _states(store)["published"] < expected  # killed during publication
    second = _worker(settings)
    try:
        _wait_until(lambda: _states(store)["published"] == expected, 180, "every row published")
    finally:
        out = _stop(second)
    assert second.returncode == 0, out[-2000:]
    _check_exactly_once(store, own_broker, expected)
    store.dispose()


def test_worker_beside_the_dag_task_and_new_commits(
    tmp_path: Path, pg_url: str, own_broker: str
) -> None:
    settings = _settings(tmp_path, pg_url, own_broker)
    store, expected = _store(settings, 1500)
    stop = threading.Event()
    worker = threading.Thread(target=serve, args=(settings, store),
                              kwargs={"stop": stop, "batch": 200}, daemon=True)  # fmt: skip
    worker.start()
    try:
        _wait_until(lambda: _states(store)["published"] >= 200, 60, "the worker publishing")
        expected += add_routed(store, PREFIX, 500, first=100_000)  # committed meanwhile
        dag = publish.run(settings, store, batch=300)  # the DAG's task, at the same time
        _wait_until(lambda: _states(store)["published"] == expected, 120, "every row published")
    finally:
        stop.set()
        worker.join(timeout=60)
    assert not worker.is_alive()
    # Who published which share depends on timing; that nothing is published twice does not.
    assert dag.counts["published"] <= expected
    _check_exactly_once(store, own_broker, expected)
    store.dispose()


def test_a_commit_is_published_within_a_moment(
    tmp_path: Path, pg_url: str, own_broker: str
) -> None:
    settings = _settings(tmp_path, pg_url, own_broker)
    store, _ = _store(settings, 0)
    stop = threading.Event()
    # idle: the longest sleep without a NOTIFY; the commit must wake the worker sooner.
    worker = threading.Thread(target=serve, args=(settings, store),
                              kwargs={"stop": stop, "idle": 30.0}, daemon=True)  # fmt: skip
    worker.start()
    try:
        time.sleep(3)  # the worker is asleep on LISTEN
        t = time.monotonic()
        n = add_routed(store, PREFIX, 5, first=200_000)
        _wait_until(lambda: _states(store)["published"] == n, 10, "the commit published")
        took = time.monotonic() - t
    finally:
        stop.set()
        worker.join(timeout=60)
    assert n == 5 and took < 5.0
    _check_exactly_once(store, own_broker, n)
    store.dispose()


def test_sqlite_worker_polls_and_shares_the_file_lease(tmp_path: Path, own_broker: str) -> None:
    settings = _settings(tmp_path, f"sqlite:///{tmp_path / 'hub.db'}", own_broker)
    store, expected = _store(settings, 600)
    lease = publish.PublishLease(store)
    lease.acquire()  # another publisher holds the lease: the worker must wait
    worker = _worker(settings, "--poll", "0.1")
    try:
        time.sleep(4)
        assert _states(store) == Counter({"pending": expected})
        lease.release()
        _wait_until(lambda: _states(store)["published"] == expected, 120, "every row published")
    finally:
        out = _stop(worker)
    assert worker.returncode == 0, out[-2000:]
    _check_exactly_once(store, own_broker, expected)
    store.dispose()


def test_outbox_rows_written_again_are_left_as_they_are(
    tmp_path: Path, pg_url: str, own_broker: str
) -> None:
    from ehub.feeds import insert_rows

    settings = _settings(tmp_path, pg_url, own_broker)
    store, n = _store(settings, 120)  # one statement of arrays (more than 50 rows)
    with store.session() as s:
        rows = [
            {c.name: getattr(r, c.name) for c in FeedMessageRow.__table__.columns if c.name != "id"}
            for r in s.scalars(select(FeedMessageRow).order_by(FeedMessageRow.id))
        ]
        ids = list(s.scalars(select(FeedMessageRow.message_id).order_by(FeedMessageRow.id)))
    with store.session() as s:
        insert_rows(s, rows)  # a re-run of the same records: nothing new, no error
    with store.session() as s:
        again = list(s.scalars(select(FeedMessageRow.message_id).order_by(FeedMessageRow.id)))
    assert n == 120 and again == ids
    store.dispose()
