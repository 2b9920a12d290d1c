"""The dev PKI's TSA certificate, CRLs, revocation, HTTP services and CLI."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from asn1crypto import algos, cms, tsp
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from ehub.cli import main
from signing import pki_build
from signing.errors import SigningError
from signing.pki import DevPKI, _load_key, ensure_dev_pki, issue_seal_certificate
from signing.pki_revocation import list_seal_certificates, revoke_seal_certificate
from signing.pki_services import Fault, PkiServer, serve_pki


@pytest.fixture
def spki(tmp_path: Path) -> DevPKI:
    return ensure_dev_pki(tmp_path / "pki", passphrase="services-passphrase")


@pytest.fixture
def server(spki: DevPKI) -> Iterator[PkiServer]:
    with serve_pki(spki) as running:
        yield running


def _crl(server: PkiServer, name: str) -> x509.CertificateRevocationList:
    answer = httpx.get(f"{server.url}/crl/{name}")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/pkix-crl"
    return x509.load_der_x509_crl(answer.content)


def _time_stamp_query(data: bytes, nonce: int) -> bytes:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(data)
    request = tsp.TimeStampReq(
        {
            "version": "v1",
            "message_imprint": tsp.MessageImprint(
                {
                    "hash_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
                    "hashed_message": digest.finalize(),
                }
            ),
            "nonce": nonce,
            "cert_req": True,
        }
    )
    return request.dump()


def test_tsa_certificate_profile(spki: DevPKI) -> None:
    tsa = spki.tsa_cert()
    tsa.verify_directly_issued_by(spki.root_cert())
    eku = tsa.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert eku.critical
    assert list(eku.value) == [ExtendedKeyUsageOID.TIME_STAMPING]
    assert not tsa.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert spki.tsa_key_path.stat().st_mode & 0o777 == 0o600
    assert b"BEGIN ENCRYPTED PRIVATE KEY" in spki.tsa_key_path.read_bytes()


def test_service_url_is_fixed_for_the_directory(spki: DevPKI) -> None:
    assert spki.services is not None
    again = ensure_dev_pki(spki.directory, passphrase="services-passphrase")
    assert again.services == spki.services
    inter_dp = spki.intermediate_cert().extensions.get_extension_for_class(
        x509.CRLDistributionPoints
    )
    assert inter_dp.value[0].full_name == [x509.UniformResourceIdentifier(spki.services.root_crl)]
    later = issue_seal_certificate(spki, "后发证单位", "11370100MB1234562A", "后发专用章")
    (info,) = [c for c in list_seal_certificates(spki) if c.path == later]
    assert info.crl_urls == (spki.services.intermediate_crl,)


def test_service_url_can_be_chosen_at_creation(tmp_path: Path) -> None:
    pki = ensure_dev_pki(tmp_path / "p", passphrase="x", service_url="http://127.0.0.1:18443/")
    assert pki.tsa_url == "http://127.0.0.1:18443/tsa"
    # Later calls keep the stored URL, whatever they ask for.
    again = ensure_dev_pki(tmp_path / "p", passphrase="x", service_url="http://127.0.0.1:1/")
    assert again.services == pki.services


def test_crls_are_served_and_signed_by_their_ca(spki: DevPKI, server: PkiServer) -> None:
    assert server.url == spki.service_urls().base_url
    root_crl = _crl(server, "root.crl")
    inter_crl = _crl(server, "intermediate.crl")
    assert root_crl.issuer == spki.root_cert().subject
    assert inter_crl.issuer == spki.intermediate_cert().subject
    root_key = spki.root_cert().public_key()
    inter_key = spki.intermediate_cert().public_key()
    assert isinstance(root_key, ec.EllipticCurvePublicKey)
    assert isinstance(inter_key, ec.EllipticCurvePublicKey)
    assert root_crl.is_signature_valid(root_key)
    assert inter_crl.is_signature_valid(inter_key)
    assert len(inter_crl) == 0
    assert httpx.get(f"{server.url}/crl/other.crl").status_code == 404
    assert httpx.get(f"{server.url}/health").text == "ok"


def test_revocation_appears_on_the_served_crl(spki: DevPKI, server: PkiServer) -> None:
    (seal,) = list_seal_certificates(spki)
    first = revoke_seal_certificate(spki, seal.serial, reason=x509.ReasonFlags.key_compromise)
    crl = _crl(server, "intermediate.crl")
    entry = crl.get_revoked_certificate_by_serial_number(seal.serial)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == (
        x509.ReasonFlags.key_compromise
    )
    assert first.reason == "key_compromise"
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 2

    again = revoke_seal_certificate(spki, seal.serial)  # idempotent: first entry kept
    assert again.revoked_at == first.revoked_at and again.reason == "key_compromise"
    with pytest.raises(SigningError, match="no seal certificate"):
        revoke_seal_certificate(spki, 12345)


def test_stale_crl_is_resigned_with_its_entries(spki: DevPKI, server: PkiServer) -> None:
    (seal,) = list_seal_certificates(spki)
    revoke_seal_certificate(spki, seal.serial)
    # Re-sign the CRL as if 20 days ago: 10 days left, under the refresh margin.
    key = _load_key(spki.intermediate_key_path, spki.passphrase)
    previous = pki_build.load_crl(spki.intermediate_crl_path)
    old = pki_build.build_crl(
        spki.intermediate_cert(),
        key,
        previous,
        now=dt.datetime.now(dt.UTC) - dt.timedelta(days=20),
    )
    spki.intermediate_crl_path.write_bytes(pki_build.crl_der(old))

    served = _crl(server, "intermediate.crl")
    assert served.next_update_utc is not None
    assert served.next_update_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=25)
    assert served.get_revoked_certificate_by_serial_number(seal.serial) is not None


def test_tsa_answers_rfc3161(spki: DevPKI, server: PkiServer) -> None:
    query = _time_stamp_query(b"document bytes", nonce=0x1234567890)
    answer = httpx.post(
        f"{server.url}/tsa",
        content=query,
        headers={"Content-Type": "application/timestamp-query"},
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/timestamp-reply"
    reply = tsp.TimeStampResp.load(answer.content)
    assert reply["status"]["status"].native == "granted"
    token = reply["time_stamp_token"]
    signed: cms.SignedData = token["content"]
    info = signed["encap_content_info"]["content"].parsed
    assert info["nonce"].native == 0x1234567890
    sent = tsp.TimeStampReq.load(query)["message_imprint"]["hashed_message"].native
    assert info["message_imprint"]["hashed_message"].native == sent
    assert abs(info["gen_time"].native - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)
    certs = [c.chosen for c in signed["certificates"]]
    assert [c.subject.native["common_name"] for c in certs] == ["ehub Dev Timestamp Authority"]
    assert server.tsa_requests == 1


def test_tsa_rejects_bad_requests(server: PkiServer) -> None:
    url = f"{server.url}/tsa"
    wrong_type = httpx.post(url, content=b"x", headers={"Content-Type": "text/plain"})
    assert wrong_type.status_code == 415
    garbage = httpx.post(
        url, content=b"\x30\x03junk", headers={"Content-Type": "application/timestamp-query"}
    )
    assert garbage.status_code == 400
    assert server.tsa_requests == 0


def test_faults_and_close(server: PkiServer) -> None:
    server.faults.crl = Fault.ERROR
    assert httpx.get(f"{server.url}/crl/root.crl").status_code == 503
    server.faults.crl = Fault.DROP
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.url}/crl/root.crl")
    server.faults.crl = None
    assert httpx.get(f"{server.url}/crl/root.crl").status_code == 200
    server.close()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/crl/root.crl")


def test_cli_init_show_revoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EHUB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("EHUB_SEAL_PASSPHRASE", raising=False)
    runner = CliRunner()
    missing = runner.invoke(main, ["pki", "show"])
    assert missing.exit_code != 0

    created = runner.invoke(main, ["pki", "init"])
    assert created.exit_code == 0, created.output
    pki = ensure_dev_pki(tmp_path / "home" / "pki")
    out = created.output
    assert "created a new development PKI" in out
    assert "ehub Dev Timestamp Authority" in out
    assert pki.tsa_url in out
    (seal,) = list_seal_certificates(pki)
    assert f"{seal.serial:X}" in out
    assert pki.passphrase not in out
    assert "PRIVATE KEY" not in out

    revoked = runner.invoke(main, ["pki", "revoke", f"{seal.serial:X}", "--reason", "superseded"])
    assert revoked.exit_code == 0, revoked.output
    crl = pki_build.load_crl(pki.intermediate_crl_path)
    assert crl is not None and crl.get_revoked_certificate_by_serial_number(seal.serial)
    shown = runner.invoke(main, ["pki", "show"])
    assert shown.exit_code == 0 and "REVOKED" in shown.output
    bad = runner.invoke(main, ["pki", "revoke", "not-hex"])
    assert bad.exit_code != 0
    assert os.stat(pki.tsa_key_path).st_mode & 0o777 == 0o600
