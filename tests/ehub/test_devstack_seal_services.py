"""The dev stack's seal services: the PKI's CRL + TSA endpoint on the port its
certificates name, and the verification endpoint; a taken PKI port is survived."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx

from ehub import devstack
from ehub.store.db import Store
from signing.pki import ensure_dev_pki


def _stop_all(services: list[devstack.Service]) -> None:
    for svc in services:
        devstack._stop(svc.pid)


def test_seal_services_serve_the_tsa_crls_and_verification(tmp_path: Path) -> None:
    pki = ensure_dev_pki(tmp_path / "pki")
    services: list[devstack.Service] = []
    try:
        vport = devstack._start_seal_services(tmp_path, services)
        assert [s.name for s in services] == ["pki", "verify"]
        assert pki.services is not None
        crl = httpx.get(pki.services.intermediate_crl, timeout=10)
        assert crl.status_code == 200 and crl.content  # DER CRL signed by the seal CA
        url = f"http://127.0.0.1:{vport}/verify/1.2.156.3005.2.X"
        early = httpx.get(url, timeout=10)  # before the hub store exists
        assert early.status_code == 503 and early.json()["verdict"] == "unavailable"
        Store(f"sqlite:///{tmp_path / 'hub.db'}").migrate()
        missing = httpx.get(url, timeout=10)
        assert missing.status_code == 404 and missing.json()["verdict"] == "unknown"
    finally:
        _stop_all(services)


def test_a_taken_pki_port_leaves_the_stack_up_without_it(tmp_path: Path) -> None:
    pki = ensure_dev_pki(tmp_path / "pki")
    assert pki.services is not None
    services: list[devstack.Service] = []
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", pki.services.port))
        squatter.listen()  # something else answers on the PKI's port
        try:
            devstack._start_seal_services(tmp_path, services)
            assert [s.name for s in services] == ["verify"]
        finally:
            _stop_all(services)
