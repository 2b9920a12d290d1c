"""Development PKI: generation, reuse, file protection, certificate profile."""

from __future__ import annotations

import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from signing.errors import KeyAccessError
from signing.pki import (
    PASSPHRASE_ENV,
    PASSPHRASE_FILE,
    DevPKI,
    ensure_dev_pki,
    issue_seal_certificate,
)


def _snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(directory)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _open_p12(
    path: Path, passphrase: str
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate, list[x509.Certificate]]:
    key, cert, cas = pkcs12.load_key_and_certificates(path.read_bytes(), passphrase.encode())
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert cert is not None
    return key, cert, cas


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)


@pytest.mark.usefixtures("clean_env")
def test_first_run_creates_files_and_second_run_reuses_them(tmp_path: Path) -> None:
    first = ensure_dev_pki(tmp_path)
    before = _snapshot(tmp_path)
    second = ensure_dev_pki(tmp_path)

    assert second == first
    assert _snapshot(tmp_path) == before  # nothing rewritten
    assert set(before) == {
        "root.pem",
        "root.key.pem",
        "intermediate.pem",
        "intermediate.key.pem",
        "seal.p12",
        PASSPHRASE_FILE,
        "tsa.pem",
        "tsa.key.pem",
        "services.json",
        "crl/root.crl",
        "crl/intermediate.crl",
    }
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.usefixtures("clean_env")
def test_secrets_are_0600_and_no_clear_private_key(tmp_path: Path) -> None:
    pki = ensure_dev_pki(tmp_path)
    passphrase_file = tmp_path / PASSPHRASE_FILE
    assert _mode(passphrase_file) == 0o600
    assert passphrase_file.read_text().strip() == pki.passphrase
    assert len(pki.passphrase) >= 32
    for secret in ("seal.p12", "root.key.pem", "intermediate.key.pem", "tsa.key.pem"):
        assert _mode(tmp_path / secret) == 0o600, secret
    for path in tmp_path.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        assert b"-----BEGIN PRIVATE KEY" not in data, path.name
        assert b"-----BEGIN EC PRIVATE KEY" not in data, path.name
        assert b"-----BEGIN RSA PRIVATE KEY" not in data, path.name
    assert b"BEGIN ENCRYPTED PRIVATE KEY" in (tmp_path / "root.key.pem").read_bytes()


@pytest.mark.usefixtures("clean_env")
def test_passphrase_is_random_per_pki_and_not_in_repr(tmp_path: Path) -> None:
    a = ensure_dev_pki(tmp_path / "a")
    b = ensure_dev_pki(tmp_path / "b")
    assert a.passphrase != b.passphrase
    assert a.passphrase not in repr(a)
    assert "passphrase=" not in repr(a)


def test_passphrase_from_environment_is_used_and_not_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, "from-the-environment")
    pki = ensure_dev_pki(tmp_path)
    assert pki.passphrase == "from-the-environment"
    assert not (tmp_path / PASSPHRASE_FILE).exists()
    _open_p12(pki.seal_p12_path, "from-the-environment")


def test_reuse_with_a_different_passphrase_is_refused(tmp_path: Path) -> None:
    ensure_dev_pki(tmp_path, passphrase="first")
    with pytest.raises(KeyAccessError, match="passphrase"):
        ensure_dev_pki(tmp_path, passphrase="second")


def test_p12_needs_the_passphrase(pki: DevPKI) -> None:
    with pytest.raises(ValueError):
        pkcs12.load_key_and_certificates(pki.seal_p12_path.read_bytes(), None)
    with pytest.raises(ValueError):
        pkcs12.load_key_and_certificates(pki.seal_p12_path.read_bytes(), b"wrong")


def test_certificate_profile(pki: DevPKI) -> None:
    root = pki.root_cert()
    inter = pki.intermediate_cert()
    key, seal, cas = _open_p12(pki.seal_p12_path, pki.passphrase)

    assert root.issuer == root.subject
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    root_ku = root.extensions.get_extension_for_class(x509.KeyUsage).value
    assert root_ku.key_cert_sign and root_ku.crl_sign
    root.verify_directly_issued_by(root)

    assert inter.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    inter.verify_directly_issued_by(root)

    seal.verify_directly_issued_by(inter)
    assert isinstance(key.curve, ec.SECP256R1)
    assert not seal.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    ku = seal.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical
    assert ku.value.digital_signature and ku.value.content_commitment
    assert not ku.value.key_cert_sign
    cn = seal.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    org = seal.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
    assert (org, cn) == ("山东省电子证照测试发证单位", "电子证照测试专用章")
    assert {c.subject for c in cas} == {root.subject, inter.subject}


@pytest.mark.usefixtures("clean_env")
def test_lost_intermediate_is_rebuilt_with_a_new_seal(tmp_path: Path) -> None:
    pki = ensure_dev_pki(tmp_path)
    old_seal = pki.seal_p12_path.read_bytes()
    (tmp_path / "intermediate.pem").unlink()  # as if a crash hit between the two writes

    again = ensure_dev_pki(tmp_path)
    assert again.root_cert() == pki.root_cert()
    assert again.seal_p12_path.read_bytes() != old_seal
    _, seal, _ = _open_p12(again.seal_p12_path, again.passphrase)
    seal.verify_directly_issued_by(again.intermediate_cert())


@pytest.mark.usefixtures("clean_env")
def test_concurrent_first_runs_build_one_pki(tmp_path: Path) -> None:
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda _: ensure_dev_pki(tmp_path / "shared"), range(6)))
    roots = {r.root_cert_path.read_bytes() for r in results}
    assert len(roots) == 1
    assert len({r.passphrase for r in results}) == 1
    _open_p12(results[0].seal_p12_path, results[0].passphrase)


def test_issue_seal_certificate(pki: DevPKI) -> None:
    path = issue_seal_certificate(
        pki, "济南市市场监督管理局", "11370100MB1234562A", "济南市市场监督管理局电子证照专用章"
    )
    assert path != pki.seal_p12_path
    assert _mode(path) == 0o600
    _, cert, _ = _open_p12(path, pki.passphrase)
    cert.verify_directly_issued_by(pki.intermediate_cert())
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == "济南市市场监督管理局电子证照专用章"
    ident = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_IDENTIFIER)[0].value
    assert ident == "NTRCN-11370100MB1234562A"

    same = issue_seal_certificate(
        pki, "济南市市场监督管理局", "11370100MB1234562A", "济南市市场监督管理局电子证照专用章"
    )
    assert same == path
    other = issue_seal_certificate(pki, "济南市市场监督管理局", "11370100MB1234562A", "另一枚章")
    assert other != path
