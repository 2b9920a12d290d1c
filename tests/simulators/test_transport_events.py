"""The transport department's license events: determinism, defects, histories, the broker."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from simulators import transport_data, transport_events
from simulators.checks import has_mojibake, license_identifier_problem, uscc_is_valid
from tests.simulators.dept_checks import KNOWN_DIVISIONS, classify_events, strings

ROOT = Path(__file__).resolve().parents[2]


def test_same_seed_same_events_other_seed_other_events() -> None:
    a = list(transport_events.events(400, seed=21, defect_rate=0.1))
    assert a == list(transport_events.events(400, seed=21, defect_rate=0.1))
    assert a != list(transport_events.events(400, seed=22, defect_rate=0.1))
    assert len(a) == 400
    assert len({e["eventId"] for e in a}) == 400
    assert all(uuid.UUID(e["eventId"]).version == 4 for e in a)
    assert [e["occurredAt"] for e in a] == sorted(e["occurredAt"] for e in a)


@pytest.mark.parametrize(
    ("count", "rate", "seed"), [(5000, 0.1, 1), (1500, 0.25, 2), (120, 0.05, 3)]
)
def test_every_defective_event_has_exactly_its_one_defect(
    count: int, rate: float, seed: int
) -> None:
    stream = transport_events.EventStream(count, seed=seed, defect_rate=rate)
    events = list(stream)
    report = stream.report()
    assert report == transport_events.report(count, seed=seed, defect_rate=rate)
    want = report.reason_of()
    found = classify_events(events)
    for event_id, reasons in found.items():
        expected = {want[event_id]} if event_id in want else set()
        assert reasons == expected, (event_id, reasons, expected)
    assert report.count == len(events) == count
    assert dict(Counter(want.values())) == {k: v for k, v in report.expected.items() if v}
    if count >= 5000:
        assert report.defective == round(count * rate)
        assert all(report.expected[k] > 0 for k in transport_events.DEFECT_KINDS)


def test_histories_are_ordered_and_every_clean_version_unique() -> None:
    stream = transport_events.EventStream(6000, seed=5, defect_rate=0.08)
    events = list(stream)
    defective = set(stream.report().reason_of())
    versions: dict[str, list[int]] = defaultdict(list)
    seen: set[tuple[str, int]] = set()
    for e in events:
        assert set(e) == {"eventId", "eventType", "occurredAt", "license"}
        assert e["eventType"] in transport_events.EVENT_TYPES
        lic = e["license"]
        if e["eventId"] in defective:
            continue
        assert (lic["zzbs"], lic["bbh"]) not in seen
        seen.add((lic["zzbs"], lic["bbh"]))
        versions[lic["zzbs"]].append(lic["bbh"])
        assert e["eventType"] != "REINSTATED"
        status = {"ISSUED": "10", "CHANGED": "10", "REVOKED": "20", "CANCELLED": "30"}
        assert lic["zt"] == status.get(e["eventType"], "40")
    assert all(v == sorted(v) and v[0] >= 1 for v in versions.values())
    lengths = Counter(len(v) for v in versions.values())
    assert lengths[1] and lengths[2] and lengths[3]  # some licenses change and end
    assert Counter(e["eventType"] for e in events)["REVOKED"] > 0


def test_clean_licenses_are_valid_and_free_of_mojibake() -> None:
    events = list(transport_events.events(3000, seed=8, defect_rate=0.0))
    assert all(not r for r in classify_events(events).values())
    for e in events:
        lic = e["license"]
        assert license_identifier_problem(lic["zzbs"]) is None
        assert lic["zzbs"].split(".")[5] == transport_data.TYPE_CODE
        assert lic["zzbs"].split(".")[6] == lic["fzjgdm"]
        assert uscc_is_valid(lic["tyshxydm"]) and uscc_is_valid(lic["fzjgdm"])
        assert lic["xzqh"] in KNOWN_DIVISIONS
        assert lic["zt"] in transport_data.STATUS_CODES
        assert not any(has_mojibake(s) for s in strings(e))
        assert lic["fzrq"] <= lic["yxqq"] < lic["yxqz"]
        assert lic["xkzh"].startswith("鲁交运管许可") and lic["xkzh"].endswith("号")
    numbers = {(e["license"]["fzjgdm"], e["license"]["xkzh"]) for e in events}
    assert len(numbers) == len({e["license"]["zzbs"] for e in events})


def test_relational_defects_come_after_their_clean_originals() -> None:
    stream = transport_events.EventStream(4000, seed=13, defect_rate=0.2)
    events = list(stream)
    keys = stream.report().defective_keys
    position = {e["eventId"]: n for n, e in enumerate(events)}
    for kind in ("E_VERSION_CONFLICT", "E_STATUS_TRANSITION"):
        assert keys[kind]
        for event_id in keys[kind]:
            event = events[position[event_id]]
            lic = event["license"]
            earlier = [
                e for e in events[: position[event_id]] if e["license"]["zzbs"] == lic["zzbs"]
            ]
            assert earlier, event_id
            if kind == "E_STATUS_TRANSITION":
                assert event["eventType"] == "REINSTATED" and lic["zt"] == "10"
                assert earlier[-1]["license"]["zt"] in ("20", "30")
                assert lic["bbh"] == earlier[-1]["license"]["bbh"] + 1
            else:
                same = [e for e in earlier if e["license"]["bbh"] == lic["bbh"]]
                assert len(same) == 1 and same[0]["license"] != lic


def test_encode_keys_by_zzbs_as_utf8_json() -> None:
    event = next(transport_events.events(1, seed=1))
    key, value = transport_events.encode(event)
    assert key.decode() == event["license"]["zzbs"]
    assert json.loads(value.decode("utf-8")) == event
    assert "业户" not in value.decode() and event["license"]["yhmc"] in value.decode()


def _read_topic(bootstrap: str, topic: str, expect: int) -> list[Any]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    try:
        parts = sorted(consumer.partitions_for_topic(topic) or ())
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        records: list[Any] = []
        empty = 0
        while len(records) < expect or empty < 2:
            batch = consumer.poll(timeout_ms=1000)
            if not batch:
                empty += 1
                if empty > 20:
                    break
                continue
            empty = 0
            for recs in batch.values():
                records.extend(recs)
        return records
    finally:
        consumer.close()


@pytest.mark.broker
def test_publish_to_the_broker_and_read_back(broker: str) -> None:
    topic = f"sim-transport-{uuid.uuid4().hex[:8]}"
    report = transport_events.publish(broker, topic, 600, seed=4, defect_rate=0.1, partitions=3)
    expected = list(transport_events.events(600, seed=4, defect_rate=0.1))
    assert report == transport_events.report(600, seed=4, defect_rate=0.1)
    records = _read_topic(broker, topic, 600)
    assert len(records) == 600
    assert len({r.partition for r in records}) > 1
    by_id = {e["eventId"]: e for e in expected}
    order = {e["eventId"]: n for n, e in enumerate(expected)}
    per_partition: dict[int, list[int]] = defaultdict(list)
    for rec in records:
        event = json.loads(rec.value.decode("utf-8"))
        assert event == by_id[event["eventId"]]
        assert rec.key.decode() == event["license"]["zzbs"]
        assert dict(rec.headers)["content-type"].startswith(b"application/json")
        per_partition[rec.partition].append(order[event["eventId"]])
    # Within a partition (so within a license) the generator's order holds.
    assert all(seq == sorted(seq) for seq in per_partition.values())
    assert {json.loads(r.value)["eventId"] for r in records} == set(by_id)


@pytest.mark.broker
def test_garbage_messages_are_malformed(broker: str) -> None:
    topic = f"sim-garbage-{uuid.uuid4().hex[:8]}"
    keys = transport_events.publish_garbage(broker, topic, 5)
    keys += transport_events.publish_garbage(broker, topic, 2)  # the topic exists by now
    records = _read_topic(broker, topic, 7)
    assert sorted(r.key for r in records) == sorted(keys)
    for rec in records:
        try:
            parsed = json.loads(rec.value.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        assert not (isinstance(parsed, dict) and "license" in parsed and "eventId" in parsed)


@pytest.mark.broker
def test_cli_publishes_and_prints_the_report(broker: str) -> None:
    topic = f"sim-cli-{uuid.uuid4().hex[:8]}"
    out = subprocess.run(
        [sys.executable, "-m", "simulators", "transport-events", "--bootstrap", broker,
         "--topic", topic, "--count", "80", "--seed", "6", "--defect-rate", "0.2", "--with-keys"],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    printed = json.loads(out.stdout)
    report = transport_events.report(80, seed=6, defect_rate=0.2)
    assert printed == report.to_dict(include_keys=True)
    assert len(_read_topic(broker, topic, 80)) == 80
