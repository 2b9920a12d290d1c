"""SM2/SM3 through libcrypto, checked against the OpenSSL 3 command line.

The ``openssl`` CLI is the independent verifier: our signatures must verify
with ``pkeyutl -verify -rawin -digest sm3 -pkeyopt distid:1234567812345678``
and the CLI's signatures must verify here. Keys are generated per run.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from signing import sm2, sm2_cert
from signing.errors import CryptoLibraryError, KeyAccessError, SigningError

OPENSSL = shutil.which("openssl")
DISTID = "distid:" + sm2.DEFAULT_ID.decode()
DATA = "电子证照 e-license payload ".encode() * 20


def openssl(*args: str | Path) -> subprocess.CompletedProcess[bytes]:
    assert OPENSSL, "the openssl CLI (OpenSSL 3) is required by these tests"
    return subprocess.run([OPENSSL, *map(str, args)], capture_output=True, check=False)


@pytest.fixture(scope="module")
def key() -> sm2.SM2PrivateKey:
    return sm2.SM2PrivateKey.generate()


@pytest.fixture()
def files(tmp_path: Path, key: sm2.SM2PrivateKey) -> Path:
    (tmp_path / "data").write_bytes(DATA)
    (tmp_path / "pub.pem").write_bytes(key.public_key().to_pem())
    (tmp_path / "priv.pem").write_bytes(key.to_pem())
    return tmp_path


def test_openssl_cli_is_openssl_3() -> None:
    version = openssl("version").stdout.decode()
    assert version.startswith("OpenSSL 3."), version


def test_sm3_known_answers() -> None:
    # GB/T 32905-2016 appendix A examples.
    assert sm2.sm3(b"abc").hex() == (
        "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    )
    assert sm2.sm3(b"abcd" * 16).hex() == (
        "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
    )


def test_signature_verifies_with_openssl_cli(key: sm2.SM2PrivateKey, files: Path) -> None:
    (files / "sig").write_bytes(key.sign(DATA))
    result = openssl(
        "pkeyutl", "-verify", "-in", files / "data", "-sigfile", files / "sig",
        "-pubin", "-inkey", files / "pub.pem", "-rawin", "-digest", "sm3", "-pkeyopt", DISTID,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    assert b"Signature Verified Successfully" in result.stdout


def test_distinguishing_id_is_part_of_the_signature(key: sm2.SM2PrivateKey, files: Path) -> None:
    # OpenSSL 3.0's CLI defaults to an empty ID, so without distid it must fail:
    # this proves the GM/T 0009 ID really went into Z.
    (files / "sig").write_bytes(key.sign(DATA))
    result = openssl(
        "pkeyutl", "-verify", "-in", files / "data", "-sigfile", files / "sig",
        "-pubin", "-inkey", files / "pub.pem", "-rawin", "-digest", "sm3",
    )  # fmt: skip
    assert result.returncode != 0
    assert not key.public_key().verify(key.sign(DATA, user_id=b"other-id"), DATA)
    assert key.public_key().verify(key.sign(DATA, user_id=b"other-id"), DATA, user_id=b"other-id")


def test_openssl_cli_signature_verifies_here(key: sm2.SM2PrivateKey, files: Path) -> None:
    result = openssl(
        "pkeyutl", "-sign", "-in", files / "data", "-out", files / "cli.sig",
        "-inkey", files / "priv.pem", "-rawin", "-digest", "sm3", "-pkeyopt", DISTID,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    cli_sig = (files / "cli.sig").read_bytes()
    assert key.public_key().verify(cli_sig, DATA)
    assert not key.public_key().verify(cli_sig, DATA + b"!")


def test_openssl_cli_key_loads_here(files: Path) -> None:
    result = openssl("genpkey", "-algorithm", "SM2", "-out", files / "cli.pem")
    assert result.returncode == 0, result.stderr.decode()
    cli_key = sm2.SM2PrivateKey.from_pem((files / "cli.pem").read_bytes())
    pub = openssl("pkey", "-in", files / "cli.pem", "-pubout").stdout
    assert sm2.SM2PublicKey.from_pem(pub).verify(cli_key.sign(DATA), DATA)


def test_tampered_data_wrong_key_and_garbage_are_invalid(key: sm2.SM2PrivateKey) -> None:
    sig = key.sign(DATA)
    public = key.public_key()
    assert public.verify(sig, DATA)
    assert not public.verify(sig, DATA[:-1] + b"?")
    assert not sm2.SM2PrivateKey.generate().public_key().verify(sig, DATA)
    flipped = sig[:-1] + bytes([sig[-1] ^ 1])
    assert not public.verify(flipped, DATA)
    assert not public.verify(sig[:-3], DATA)
    assert not public.verify(b"", DATA)
    assert not public.verify(b"\x30\x00", DATA)


def test_signatures_are_der_and_convert_to_raw(key: sm2.SM2PrivateKey) -> None:
    sig = key.sign(DATA)
    assert sig[0] == 0x30 and len(sig) <= 72
    raw = sm2.der_to_raw(sig)
    assert len(raw) == 64
    assert sm2.raw_to_der(raw) == sig
    assert key.public_key().verify(sm2.raw_to_der(raw), DATA)
    with pytest.raises(ValueError):
        sm2.raw_to_der(raw[:63])
    with pytest.raises(ValueError):
        sm2.der_to_raw(b"\x04\x02ab")


def test_pem_round_trip_and_openssl_reads_encrypted_key(
    key: sm2.SM2PrivateKey, tmp_path: Path
) -> None:
    pem = key.to_pem(b"test-passphrase")
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    again = sm2.SM2PrivateKey.from_pem(pem, b"test-passphrase")
    assert key.public_key().verify(again.sign(DATA), DATA)
    (tmp_path / "enc.pem").write_bytes(pem)
    result = openssl(
        "pkey", "-in", tmp_path / "enc.pem", "-passin", "pass:test-passphrase", "-pubout"
    )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == key.public_key().to_pem()
    public = sm2.SM2PublicKey.from_der(key.public_key().to_der())
    assert public.to_pem() == key.public_key().to_pem()


@pytest.mark.parametrize("passphrase", [b"wrong", None])
def test_wrong_or_missing_passphrase_is_key_access_error(
    key: sm2.SM2PrivateKey, passphrase: bytes | None
) -> None:
    with pytest.raises(KeyAccessError, match="passphrase"):
        sm2.SM2PrivateKey.from_pem(key.to_pem(b"right"), passphrase)


def test_non_sm2_and_garbage_keys_are_refused() -> None:
    p256 = ec.generate_private_key(ec.SECP256R1())
    pem = p256.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(KeyAccessError, match="not an SM2 key"):
        sm2.SM2PrivateKey.from_pem(pem)
    with pytest.raises(KeyAccessError):
        sm2.SM2PublicKey.from_pem(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    with pytest.raises(KeyAccessError):
        sm2.SM2PublicKey.from_der(b"\x30\x03\x02\x01\x01")


def test_missing_libcrypto_is_a_typed_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sm2, "_loaded", None)
    monkeypatch.setenv("EHUB_LIBCRYPTO", "/nonexistent/libcrypto.so.3")
    with pytest.raises(CryptoLibraryError, match="EHUB_LIBCRYPTO") as caught:
        sm2.sm3(b"x")
    assert isinstance(caught.value, SigningError)
    assert caught.value.call == "dlopen"
    assert not sm2.libcrypto_available()
    monkeypatch.undo()
    assert sm2.libcrypto_available()


def test_signing_from_many_threads(key: sm2.SM2PrivateKey) -> None:
    public = key.public_key()
    failures: list[str] = []

    def work(n: int) -> None:
        for i in range(50):
            message = f"{n}:{i}".encode()
            if not public.verify(key.sign(message), message):
                failures.append(f"{n}:{i}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


def test_sign_throughput_is_measured() -> None:
    rate = sm2.sm2_sign_per_s(200)
    assert rate > 100  # the bench figure itself is reported by `make bench`


def test_sm2_certificates_verify_with_openssl_cli(tmp_path: Path) -> None:
    pki = sm2_cert.make_dev_sm2_pki(dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
    (tmp_path / "maker.pem").write_bytes(sm2_cert.to_pem(pki.maker_cert))
    (tmp_path / "signer.pem").write_bytes(sm2_cert.to_pem(pki.signer_cert))
    text = openssl("x509", "-in", tmp_path / "signer.pem", "-noout", "-text").stdout.decode()
    assert "Signature Algorithm: SM2-with-SM3" in text
    assert "ASN1 OID: SM2" in text
    assert "CN = ehub dev seal maker" in text and "CN = ehub dev seal signer" in text
    assert "Digital Signature, Non Repudiation" in text
    # OpenSSL 3.0 verifies SM2 certificate signatures with an empty ID unless told
    # the GM/T 0009 default with -vfyopt (GM/T 0015 certificates use the default).
    result = openssl(
        "verify", "-vfyopt", DISTID, "-CAfile", tmp_path / "maker.pem", tmp_path / "signer.pem"
    )
    assert result.returncode == 0, result.stderr.decode()
    assert sm2_cert.certificate_signed_by(pki.signer_cert, pki.maker_cert)
    assert not sm2_cert.certificate_signed_by(pki.maker_cert, pki.signer_cert)
