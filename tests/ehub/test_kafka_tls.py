"""Kafka over TLS with client authentication, as the production broker's office listener
requires (docker-compose.yml: SSL listener, ``ssl.client.auth=required``): the embedded
tansu broker behind a TLS terminator that demands a client certificate of the dev TLS
CA (:mod:`tests.kafka_tls_proxy`).

An office's ``ehub office consume`` with ``--ca/--cert/--key`` reads its feed through
TLS; without a client certificate, with a CA that did not issue the broker's
certificate, or in plaintext, it is turned away with an error naming the broker and
writes nothing. ``ehub office status`` reads the consumer lag over TLS from the
``EHUB_BROKER_*`` settings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization

from connectors.errors import BrokerUnavailable
from connectors.kafka_batch import BatchPublisher
from connectors.kafka_feed import FeedMessage, FeedPublisher, scan_ids
from connectors.tls import ClientTls, kafka_kwargs
from ehub import devstack
from ehub.cli import main
from ehub.config import Settings
from ehub.errors import ConfigError
from ehub.feeds import FeedSigner, envelope, message_id
from ehub.offices import add_office
from ehub.store.db import Store
from signing.pki_tls import TlsMaterial, ensure_tls_material
from tests.conftest import tansu_broker
from tests.kafka_tls_proxy import KafkaTlsProxy, server_context

pytestmark = pytest.mark.broker

OFFICE = "370602-zfq"


@dataclass(frozen=True)
class TlsBroker:
    address: str
    tls: TlsMaterial
    proxy: KafkaTlsProxy
    home: Path
    signer: FeedSigner
    hub_cert: Path


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    home = tmp_path_factory.mktemp("tls-hub")
    tls = ensure_tls_material(home / "pki")
    inner, outer = devstack.free_port(), devstack.free_port()
    context = server_context(tls.server_cert, tls.server_key, tls.ca_bundle)
    proxy = KafkaTlsProxy(("127.0.0.1", inner), outer, context).start()
    try:
        with tansu_broker(inner, advertised=proxy.address):
            signer = FeedSigner.dev(home)
            pem = home / "hub-feed.pem"
            pem.write_bytes(signer.cert.public_bytes(serialization.Encoding.PEM))
            yield TlsBroker(proxy.address, tls, proxy, home, signer, pem)
    finally:
        proxy.close()


def _client_tls(tls: TlsMaterial) -> ClientTls:
    return ClientTls(str(tls.ca_bundle), str(tls.client_cert), str(tls.client_key), "EHUB_BROKER")


def _publish(b: TlsBroker, topic: str, count: int) -> set[str]:
    """``count`` signed envelopes for the office, produced over TLS; their message ids."""
    from kafka import KafkaProducer

    tls = kafka_kwargs(_client_tls(b.tls))
    producer = KafkaProducer(bootstrap_servers=b.address, acks="all", **tls)
    ids = set()
    try:
        for n in range(count):
            key = f"1.2.156.3005.2.TLS.{n:06d}"
            mid = message_id(topic, key, 1)
            body = envelope(kind="license", identifier=key, version=1, status="valid",
                            division="370602", office=OFFICE, payload={"ZZBS": key},
                            message_id=mid, signer=b.signer)  # fmt: skip
            producer.send(topic, key=key.encode(), value=body,
                          headers=[("message-id", mid.encode())])  # fmt: skip
            ids.add(mid)
        producer.flush(30)
    finally:
        producer.close()
    return ids


def _consume(
    b: TlsBroker, prefix: str, out: Path, *tls_args: str
) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "ehub", "office", "consume", "--office", OFFICE,
            "--out", str(out), "--broker", b.address, "--hub-cert", str(b.hub_cert),
            "--topic-prefix", prefix, "--idle-exit", "2", *tls_args]  # fmt: skip
    env = {**os.environ, "EHUB_HOME": str(out.parent / "office-home")}
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=180)


def _read_ids(out: Path) -> list[str]:
    return [json.loads(line)["envelope"]["message_id"]
            for path in sorted(out.glob("partition-*.jsonl"))
            for line in path.read_text("utf-8").splitlines()]  # fmt: skip


def test_office_reads_its_feed_over_tls_with_its_client_certificate(
    tls_broker: TlsBroker, tmp_path: Path
) -> None:
    b = tls_broker
    prefix = f"test.tls.{uuid.uuid4().hex[:8]}."
    ids = _publish(b, prefix + OFFICE, 120)
    handshakes = b.proxy.handshakes
    out = tmp_path / "office-out"
    done = _consume(b, prefix, out, "--ca", str(b.tls.ca_bundle), "--cert",
                    str(b.tls.client_cert), "--key", str(b.tls.client_key))  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    got = _read_ids(out)
    assert sorted(got) == sorted(ids), "over TLS: a message lost or duplicated"
    assert b.proxy.handshakes > handshakes, "the consumer did not go through the TLS listener"
    print(f"\nkafka tls: {len(got)} messages read over mutual TLS, "
          f"{b.proxy.handshakes - handshakes} handshakes")  # fmt: skip


@pytest.mark.parametrize("case", ["no client certificate", "untrusted broker", "plaintext"])
def test_consumer_without_the_right_tls_is_turned_away(
    tls_broker: TlsBroker, tmp_path: Path, case: str
) -> None:
    b = tls_broker
    prefix = f"test.tls.{uuid.uuid4().hex[:8]}."
    _publish(b, prefix + OFFICE, 5)
    refused = b.proxy.refused
    if case == "no client certificate":
        args: tuple[str, ...] = ("--ca", str(b.tls.ca_bundle))
    elif case == "untrusted broker":  # a CA of another PKI, with a certificate of its own
        other = ensure_tls_material(tmp_path / "other-pki")
        args = ("--ca", str(other.ca_bundle), "--cert", str(other.client_cert),
                "--key", str(other.client_key))  # fmt: skip
    else:
        args = ()
    out = tmp_path / "office-out"
    done = _consume(b, prefix, out, *args)
    assert done.returncode != 0, f"{case}: the consumer was let in"
    assert b.address in done.stderr + done.stdout, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    assert not _read_ids(out) if out.exists() else True
    assert b.proxy.refused > refused, f"{case}: the TLS listener saw no refused handshake"


def test_office_status_reads_the_lag_over_tls_from_the_broker_settings(
    tls_broker: TlsBroker, tmp_path: Path
) -> None:
    b = tls_broker
    prefix = f"test.tls.{uuid.uuid4().hex[:8]}."
    store_url = f"sqlite:///{tmp_path / 'hub.db'}"
    env = {"EHUB_HOME": str(tmp_path / "home"), "EHUB_BROKER": b.address,
           "EHUB_DATABASE_URL": store_url,
           "EHUB_BROKER_CA_BUNDLE": str(b.tls.ca_bundle),
           "EHUB_BROKER_CLIENT_CERT": str(b.tls.client_cert),
           "EHUB_BROKER_CLIENT_KEY": str(b.tls.client_key)}  # fmt: skip
    store = Store(store_url)
    try:
        store.migrate()
        add_office(store, OFFICE, "芝罘区数据局", "370602", kinds=("license",),
                   fields={"license": ["ZZBS"]}, delivery=("kafka",))  # fmt: skip
    finally:
        store.dispose()
    _publish(b, prefix + OFFICE, 7)
    shown = CliRunner().invoke(main, ["office", "status", "--topic-prefix", prefix], env=env)
    assert shown.exit_code == 0, shown.output
    row = next(line for line in shown.output.splitlines() if OFFICE in line)
    assert row.rstrip(" │|").split()[-1] == "7", shown.output
    assert "consumer lag:" not in shown.output


def test_a_bad_tls_file_is_a_config_error_naming_the_setting(tmp_path: Path) -> None:
    missing = ClientTls(str(tmp_path / "nope.pem"), None, None, "EHUB_BROKER")
    with pytest.raises(ConfigError, match="EHUB_BROKER_CA_BUNDLE"):
        kafka_kwargs(missing)


def test_the_hubs_publishers_and_topic_scan_work_over_tls(tls_broker: TlsBroker) -> None:
    """With the EHUB_BROKER_* settings the hub's own clients use TLS: the batch
    publisher (the publish stage's), the feed publisher and the recovery scan."""
    b = tls_broker
    tls = Settings.from_env(
        home=b.home, broker=b.address, broker_ca_bundle=str(b.tls.ca_bundle),
        broker_client_cert=str(b.tls.client_cert), broker_client_key=str(b.tls.client_key),
    ).broker_tls()  # fmt: skip
    assert tls is not None
    topic = f"test.tls.{uuid.uuid4().hex[:8]}.{OFFICE}"
    messages = [FeedMessage(topic, f"k{n}", message_id(topic, f"k{n}", 1), b'{"n": %d}' % n)
                for n in range(60)]  # fmt: skip
    handshakes = b.proxy.handshakes
    batch = BatchPublisher(b.address, tls=tls)
    try:
        assert len(batch.publish(messages[:40])) == 40
    finally:
        batch.close()
    single = FeedPublisher(b.address, tls=tls)
    try:
        assert len(single.publish(messages[40:])) == 20
    finally:
        single.close()
    found = scan_ids(b.address, [topic], tls=tls)
    assert set(found) == {m.message_id for m in messages}
    assert b.proxy.handshakes > handshakes
    # the same clients without TLS are turned away with the broker named
    with pytest.raises(BrokerUnavailable, match=b.address):
        BatchPublisher(b.address, timeout_ms=3000)
