"""The dev PKI's TLS material: what is issued, file modes, reuse and renewal."""

from __future__ import annotations

import datetime as dt
import ipaddress
import stat
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from signing.pki import ensure_dev_pki
from signing.pki_tls import ensure_tls_material


def _leaf(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_server_and_client_certificates_from_a_tls_ca_under_the_dev_root(tmp_path: Path) -> None:
    tls = ensure_tls_material(tmp_path / "pki")
    pki = ensure_dev_pki(tmp_path / "pki")
    [ca] = x509.load_pem_x509_certificates(tls.ca_bundle.read_bytes())
    ca.verify_directly_issued_by(pki.root_cert())
    assert ca.subject != pki.intermediate_cert().subject  # not the seal-issuing CA
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0

    server, client = _leaf(tls.server_cert), _leaf(tls.client_cert)
    for leaf, eku in ((server, ExtendedKeyUsageOID.SERVER_AUTH),
                      (client, ExtendedKeyUsageOID.CLIENT_AUTH)):  # fmt: skip
        leaf.verify_directly_issued_by(ca)
        assert list(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [eku]
        assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    cn = client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == "ehub hub client"
    # the leaf files carry the chain up to the TLS CA
    assert x509.load_pem_x509_certificates(tls.server_cert.read_bytes())[1] == ca

    assert _mode(tls.server_key) == _mode(tls.client_key) == 0o600
    assert _mode(tls.ca_bundle.parent) == 0o700
    assert b"ENCRYPTED" not in tls.server_key.read_bytes()  # uvicorn loads it as is
    assert b"ENCRYPTED" in (tls.ca_bundle.parent / "tls-ca.key.pem").read_bytes()


def test_existing_material_is_reused(tmp_path: Path) -> None:
    first = ensure_tls_material(tmp_path / "pki")
    before = {p: p.read_bytes() for p in first.ca_bundle.parent.iterdir()}
    again = ensure_tls_material(tmp_path / "pki")
    assert again == first
    assert {p: p.read_bytes() for p in again.ca_bundle.parent.iterdir()} == before


def test_expiring_missing_or_renamed_certificates_are_issued_again(tmp_path: Path) -> None:
    tls = ensure_tls_material(tmp_path / "pki")
    ca = tls.ca_bundle.read_bytes()
    server, client = _leaf(tls.server_cert), _leaf(tls.client_cert)

    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=340)  # leaves within 30 days of the end
    ensure_tls_material(tmp_path / "pki", now=later)
    assert _leaf(tls.server_cert).serial_number != server.serial_number
    assert _leaf(tls.client_cert).serial_number != client.serial_number
    assert tls.ca_bundle.read_bytes() == ca  # the CA has years left

    tls.client_key.unlink()
    client = _leaf(tls.client_cert)
    ensure_tls_material(tmp_path / "pki")
    assert _leaf(tls.client_cert).serial_number != client.serial_number
    assert tls.client_key.exists()

    ensure_tls_material(tmp_path / "pki", server_names=("localhost", "127.0.0.1", "platform"))
    san = _leaf(tls.server_cert).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert "platform" in san.value.get_values_for_type(x509.DNSName)
