"""Mutual TLS between the hub's platform client and the provincial simulator.

The simulator runs as ``python -m simulators provincial --tls-...`` under real
uvicorn with the dev PKI's TLS material (generated at run time): the hub's
client with its certificate is served; a client without one, a client that does
not trust the dev TLS CA, a seal certificate of the same dev root, and plain HTTP
are all refused.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from connectors.platform import OutboundLicense, PlatformUnavailable, ProvincialClient
from connectors.tls import ClientTls, httpx_kwargs
from ehub.config import Settings
from ehub.errors import ConfigError
from signing.pki import ensure_dev_pki
from signing.pki_tls import TlsMaterial, ensure_tls_material
from tests.simulators.payloads import TOKEN, item

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    return ensure_tls_material(tmp_path_factory.mktemp("dev") / "pki")


@pytest.fixture(scope="module")
def url(tls: TlsMaterial, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a provincial simulator that requires client certificates."""
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "simulators", "provincial", "--port", "0",
            "--state", str(tmp_path_factory.mktemp("platform")), "--token", TOKEN,
            "--signature-check", "structural", "--log-level", "critical",
            "--tls-cert", str(tls.server_cert), "--tls-key", str(tls.server_key),
            "--tls-client-ca", str(tls.ca_bundle),
        ],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
    try:
        deadline = time.monotonic() + 30
        while True:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if line.startswith("{"):
                break
        yield json.loads(line)["url"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _pump(stream: Any, into: queue.Queue[str]) -> None:
    for line in stream:
        into.put(line)


def _hub(tls: TlsMaterial) -> ClientTls:
    return ClientTls(str(tls.ca_bundle), str(tls.client_cert), str(tls.client_key))


def _license(key: str) -> OutboundLicense:
    it = item(key)
    doc = it["document"]
    return OutboundLicense(key, it["license"], doc["content_b64"], doc["sha256"])


def test_the_hub_with_its_client_certificate_delivers(url: str, tls: TlsMaterial) -> None:
    assert url.startswith("https://127.0.0.1:")
    client = ProvincialClient(url, TOKEN, tls=_hub(tls), timeout=10)
    try:
        [receipt] = client.send_licenses([_license("tls-k1")])
    finally:
        client.close()
    assert receipt.accepted and receipt.receipt_id, receipt.raw


def test_a_client_without_a_certificate_is_refused_at_the_handshake(
    url: str, tls: TlsMaterial
) -> None:
    client = ProvincialClient(url, TOKEN, tls=ClientTls(ca_bundle=str(tls.ca_bundle)), timeout=10)
    with pytest.raises(PlatformUnavailable, match="unreachable") as err:
        client.send_licenses([_license("tls-k2")])
    assert isinstance(err.value.__cause__, httpx.TransportError)


@pytest.mark.parametrize("trust", ["public CAs", "another dev PKI"])
def test_a_client_that_does_not_trust_the_dev_tls_ca_refuses_the_server(
    url: str, tls: TlsMaterial, tmp_path: Path, trust: str
) -> None:
    bundle = None if trust == "public CAs" else str(ensure_tls_material(tmp_path).ca_bundle)
    hub = ClientTls(bundle, str(tls.client_cert), str(tls.client_key))
    client = ProvincialClient(url, TOKEN, tls=hub, timeout=10)
    with pytest.raises(PlatformUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
        client.send_licenses([_license("tls-k3")])


def test_a_seal_certificate_of_the_same_dev_root_is_no_tls_client(
    url: str, tls: TlsMaterial, tmp_path: Path
) -> None:
    pki = ensure_dev_pki(tls.ca_bundle.parent.parent)
    key, cert, _cas = pkcs12.load_key_and_certificates(
        pki.seal_p12_path.read_bytes(), pki.passphrase.encode()
    )
    assert key is not None and cert is not None
    (tmp_path / "seal.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "seal.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    hub = ClientTls(str(tls.ca_bundle), str(tmp_path / "seal.pem"), str(tmp_path / "seal.key"))
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/healthz", timeout=10, **httpx_kwargs(hub))


def test_plain_http_to_the_tls_port_fails(url: str) -> None:
    plain = url.replace("https://", "http://")
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{plain}/healthz", timeout=10)
    with pytest.raises(PlatformUnavailable, match="unreachable"):
        ProvincialClient(plain, TOKEN, timeout=10).send_licenses([_license("tls-k4")])


def test_unreadable_client_files_are_a_config_error_naming_the_setting(
    tls: TlsMaterial, tmp_path: Path
) -> None:
    missing = ClientTls(str(tls.ca_bundle), str(tmp_path / "nope.pem"), str(tls.client_key))
    with pytest.raises(ConfigError, match="EHUB_PLATFORM_CLIENT_CERT"):
        missing.ssl_context()
    with pytest.raises(ConfigError, match="EHUB_PLATFORM_CA_BUNDLE"):
        ClientTls(str(tmp_path / "nope.pem")).ssl_context()
    with pytest.raises(ConfigError, match="EHUB_PLATFORM_CLIENT_KEY"):
        ClientTls(key=str(tls.client_key)).ssl_context()


def test_settings_name_the_tls_files(
    tls: TlsMaterial, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("CA_BUNDLE", "CLIENT_CERT", "CLIENT_KEY"):
        monkeypatch.delenv(f"EHUB_PLATFORM_{name}", raising=False)
    assert Settings.from_env(home=tmp_path).platform_tls() is None
    monkeypatch.setenv("EHUB_PLATFORM_CA_BUNDLE", str(tls.ca_bundle))
    monkeypatch.setenv("EHUB_PLATFORM_CLIENT_CERT", str(tls.client_cert))
    monkeypatch.setenv("EHUB_PLATFORM_CLIENT_KEY", str(tls.client_key))
    assert Settings.from_env(home=tmp_path).platform_tls() == _hub(tls)
