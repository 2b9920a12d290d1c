"""Publish stage on the real embedded broker: exactly once, also across a failed send."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition
from sqlalchemy import func, select

from connectors.kafka_batch import BatchPublisher
from connectors.kafka_feed import FeedMessage, Published
from ehub.config import Settings
from ehub.errors import BrokerUnavailable
from ehub.offices_dev import ensure_dev_offices
from ehub.pipeline import publish, seal
from ehub.store.db import Store
from ehub.store.models import FeedMessageRow
from simulators.market_regulation import generate
from tests.ehub.pipeline_support import ingest_market


def _prepare(
    tmp_path: Path, broker: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[Settings, Store]:
    mr = f"sqlite:///{tmp_path / 'mr.db'}"
    generate(mr, count=40, defect_rate=0.0, seed=11)
    prefix = f"test.{tmp_path.name[-12:].lower()}."
    settings = replace(
        Settings.from_env(
            home=tmp_path / "home",
            out_dir=tmp_path / "out",
            database_url=f"sqlite:///{tmp_path / 'hub.db'}",
            market_regulation_url=mr,
            batch_size=15,
            broker=broker,
        ),
        return_topic_prefix=prefix,
    )
    store = Store(settings.database_url)
    store.migrate()
    ensure_dev_offices(store)  # one office per city: every record returned once
    ingest_market(settings, store, mr, monkeypatch)
    seal.run(settings, store)
    return settings, store


def _on_broker(settings: Settings) -> Counter[str]:
    c = KafkaConsumer(bootstrap_servers=settings.broker, enable_auto_commit=False)
    tps = [
        TopicPartition(t, p)
        for t in c.topics()
        if t.startswith(settings.return_topic_prefix)
        for p in c.partitions_for_topic(t) or ()
    ]
    ids: Counter[str] = Counter()
    c.assign(tps)
    c.seek_to_beginning()
    empty = 0
    while empty < 3:
        batch = c.poll(timeout_ms=400)
        empty = 0 if batch else empty + 1
        for recs in batch.values():
            for r in recs:
                ids[dict(r.headers)["message-id"].decode()] += 1
    c.close()
    return ids


def test_publish_is_exactly_once_across_reruns(
    tmp_path: Path, broker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, store = _prepare(tmp_path, broker, monkeypatch)
    assert publish.run(settings, store, batch=settings.batch_size).counts["published"] == 40
    assert publish.run(settings, store).counts["published"] == 0
    ids = _on_broker(settings)
    assert len(ids) == 40 and set(ids.values()) == {1}


def test_a_send_that_fails_halfway_is_settled_by_a_topic_scan(
    tmp_path: Path, broker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, store = _prepare(tmp_path, broker, monkeypatch)
    calls = {"n": 0}

    class HalfThenFail(BatchPublisher):
        def publish(self, messages: Sequence[FeedMessage]) -> list[Published]:
            calls["n"] += 1
            if calls["n"] == 2:  # the second batch: half reaches the broker, then the link drops
                super().publish(messages[: len(messages) // 2])
                raise BrokerUnavailable("connection reset by test")
            return super().publish(messages)

    monkeypatch.setattr(publish, "BatchPublisher", HalfThenFail)
    result = publish.run(settings, store, batch=settings.batch_size)
    assert result.counts["recovered"] == 7  # half of the 15 found on the broker, not re-sent
    ids = _on_broker(settings)
    assert len(ids) == 40 and set(ids.values()) == {1}
    with store.session() as s:
        assert (
            s.scalar(
                select(func.count())
                .select_from(FeedMessageRow)
                .where(FeedMessageRow.state == "published")
            )
            == 40
        )


def test_unreachable_broker_names_it(
    tmp_path: Path, broker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, store = _prepare(tmp_path, broker, monkeypatch)
    with pytest.raises(BrokerUnavailable, match=r"127\.0\.0\.1:1"):
        publish.run(replace(settings, broker="127.0.0.1:1"), store, attempts=1)
