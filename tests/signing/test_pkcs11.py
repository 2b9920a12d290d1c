"""Pkcs11Sealer against a real SoftHSM2 token provisioned by signing.softhsm.

The token, its PINs and its key are generated at run time under tmp_path;
nothing secret is committed. SoftHSM2 is installed in CI by
scripts/system-deps.sh, so nothing here skips.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pkcs11
import pytest
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives.serialization import Encoding
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11_errors
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext

from signing import pkcs11_sealer
from signing.errors import KeyAccessError, SealUnavailable, SigningError
from signing.pades import PadesLevel, PadesSealer, Sealer
from signing.pkcs11_sealer import (
    Pkcs11KeyRef,
    Pkcs11Sealer,
    is_pkcs11_uri,
    load_module,
    sealer_for,
)
from signing.pki import DevPKI
from signing.pki_services import serve_pki
from signing.render import SEAL_BOX
from signing.softhsm import SoftHsmToken, activate, ensure_softhsm_token
from tests.signing.conftest import SIGNING_TIME, write
from tests.signing.verify_support import nss_db, pdfsig


@pytest.fixture(scope="module")
def token(pki: DevPKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsmToken]:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("SOFTHSM2_CONF", raising=False)  # restored after the module
        mp.delenv(pkcs11_sealer.PIN_ENV, raising=False)
        yield ensure_softhsm_token(tmp_path_factory.mktemp("hsm"), pki)


@pytest.fixture
def hsm_sealer(token: SoftHsmToken) -> Iterator[Pkcs11Sealer]:
    # Function-scoped and closed after each test: PKCS#11 login state is per
    # process, so a sealer left logged in would mask the wrong-PIN checks.
    sealer = Pkcs11Sealer(token.key_ref())
    yield sealer
    sealer.close()


def _validate(pdf: bytes, pki: DevPKI, index: int = 0) -> Any:
    root = asn1_x509.Certificate.load(pki.root_cert().public_bytes(Encoding.DER))
    sig = PdfFileReader(io.BytesIO(pdf)).embedded_regular_signatures[index]
    context = ValidationContext(trust_roots=[root], allow_fetching=False)
    return sig, validate_pdf_signature(sig, context)


def _seal(sealer: Pkcs11Sealer, pdf: bytes, **kwargs: Any) -> bytes:
    return sealer.seal(
        pdf, reason="电子证照签章", location="济南", signing_time=SIGNING_TIME, **kwargs
    )


# --- provisioning ----------------------------------------------------------


def test_provisioning_writes_conf_and_private_pins(token: SoftHsmToken) -> None:
    conf = token.conf_path.read_text(encoding="utf-8")
    assert f"directories.tokendir = {token.directory / 'tokens'}" in conf
    assert "objectstore.backend = file" in conf
    assert os.environ["SOFTHSM2_CONF"] == str(token.conf_path)
    for name in ("so.pin", "user.pin"):
        path = token.directory / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert len(path.read_text().strip()) >= 24
    assert token.user_pin not in repr(token)
    cert = token.certificate()
    assert cert.issuer.rfc4514_string().startswith("CN=ehub Dev Seal Issuing CA")
    assert token.chain_path.read_bytes().count(b"BEGIN CERTIFICATE") == 2


def test_provisioning_twice_reuses_the_token(token: SoftHsmToken, pki: DevPKI) -> None:
    again = ensure_softhsm_token(token.directory, pki)
    assert again.key_id == token.key_id
    assert again.certificate().serial_number == token.certificate().serial_number
    assert again.user_pin == token.user_pin
    lib = load_module(token.module_path)
    labels = [slot.get_token().label for slot in lib.get_slots(token_present=True)]
    assert labels.count(token.token_label) == 1


def test_rebuilt_pki_reissues_the_certificate_for_the_same_key(
    token: SoftHsmToken, pki: DevPKI, other_pki: DevPKI
) -> None:
    original = token.certificate()
    moved = ensure_softhsm_token(token.directory, other_pki)
    moved_cert = moved.certificate()  # the PEM file is rewritten below
    assert moved.key_id == token.key_id
    moved_cert.verify_directly_issued_by(other_pki.intermediate_cert())
    assert moved_cert.public_key() == original.public_key()
    back = ensure_softhsm_token(token.directory, pki)  # the other tests' PKI again
    back_cert = back.certificate()
    assert back.key_id == token.key_id
    back_cert.verify_directly_issued_by(pki.intermediate_cert())
    assert back_cert.public_key() == original.public_key()
    assert back_cert.serial_number not in (original.serial_number, moved_cert.serial_number)


def test_private_key_never_leaves_the_token(token: SoftHsmToken) -> None:
    lib = load_module(token.module_path)
    p11_token = lib.get_token(token_label=token.token_label)
    with p11_token.open(rw=True, user_pin=token.user_pin) as session:
        key = session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=token.key_label)
        assert key[Attribute.SENSITIVE] is True
        assert key[Attribute.EXTRACTABLE] is False
        assert key[Attribute.ALWAYS_SENSITIVE] is True
        assert key[Attribute.NEVER_EXTRACTABLE] is True
        assert key[Attribute.TOKEN] is True
        assert key[Attribute.SIGN] is True
        assert key[Attribute.DERIVE] is False  # a seal key signs, nothing else
        with pytest.raises(p11_errors.AttributeSensitive):
            key[Attribute.VALUE]  # the EC private scalar
        with pytest.raises(p11_errors.PKCS11Error):
            key[Attribute.EXTRACTABLE] = True  # cannot be switched back on
        wrapping = session.generate_key(KeyType.AES, 256, store=False)
        assert isinstance(wrapping, pkcs11.WrapMixin)
        with pytest.raises(p11_errors.KeyUnextractable):
            wrapping.wrap_key(key, mechanism=Mechanism.AES_KEY_WRAP_PAD)
        # The token signs with it, and the certificate on the token matches.
        certs = list(
            session.get_objects(
                {Attribute.CLASS: ObjectClass.CERTIFICATE, Attribute.LABEL: token.key_label}
            )
        )
        assert len(certs) == 1
        der = bytes(certs[0][Attribute.VALUE])
        assert der == token.certificate().public_bytes(Encoding.DER)


def test_pkcs11_tool_sees_a_sign_only_key_that_never_leaves(token: SoftHsmToken) -> None:
    """Independent view from OpenSC's pkcs11-tool (a separate process)."""
    env = {**os.environ, "SOFTHSM2_CONF": str(token.conf_path)}
    base = ["pkcs11-tool", "--module", str(token.module_path), "--token-label", token.token_label]

    def tool(*args: str) -> str:
        run = subprocess.run(
            [*base, *args], env=env, capture_output=True, text=True, check=False, timeout=60
        )
        assert run.returncode == 0, run.stdout + run.stderr
        return run.stdout

    anonymous = tool("--list-objects")
    assert "Private Key Object" not in anonymous  # CKA_PRIVATE: invisible without login
    # Test-only token: the PIN on this command line is throw-away.
    listed = tool("--login", "--pin", token.user_pin, "--list-objects", "--type", "privkey")
    assert f"label:      {token.key_label}" in listed
    assert "Usage:      sign\n" in listed
    assert "Access:     sensitive, always sensitive, never extractable, local" in listed


# --- sealing ---------------------------------------------------------------


def test_is_a_sealer(hsm_sealer: Pkcs11Sealer) -> None:
    assert isinstance(hsm_sealer, Sealer)
    assert hsm_sealer.session is None  # lazy: nothing opened yet
    assert hsm_sealer.seal_name == "电子证照测试专用章（HSM）"


def test_hsm_seal_validates_with_pyhanko(
    hsm_sealer: Pkcs11Sealer, token: SoftHsmToken, pki: DevPKI, license_pdf: bytes
) -> None:
    sealed = _seal(hsm_sealer, license_pdf)
    assert sealed.startswith(license_pdf)
    sig, status = _validate(sealed, pki)
    assert status.intact and status.valid and status.trusted, status.pretty_print_details()
    assert status.signing_cert.dump() == token.certificate().public_bytes(Encoding.DER)
    assert status.md_algorithm == "sha256"
    assert sig.sig_object["/SubFilter"] == "/ETSI.CAdES.detached"
    assert sig.self_reported_timestamp == SIGNING_TIME
    assert [round(float(v)) for v in sig.sig_field["/Rect"]] == list(SEAL_BOX)
    assert "/AP" in sig.sig_field


def test_hsm_seal_at_b_lt_with_timestamp_and_dss(
    token: SoftHsmToken, pki: DevPKI, license_pdf: bytes
) -> None:
    with serve_pki(pki) as server:
        sealer = Pkcs11Sealer(
            token.key_ref(),
            level=PadesLevel.B_LT,
            tsa_url=server.tsa_url,
            trust_roots=[pki.root_cert()],
        )
        try:
            sealed = _seal(sealer, license_pdf)
        finally:
            sealer.close()
        assert server.tsa_requests >= 1
    _, status = _validate(sealed, pki)
    assert status.intact and status.valid and status.trusted, status.pretty_print_details()
    assert status.timestamp_validity is not None
    assert status.timestamp_validity.intact and status.timestamp_validity.trusted
    assert "/DSS" in PdfFileReader(io.BytesIO(sealed)).root


def test_level_arguments_are_checked(token: SoftHsmToken) -> None:
    with pytest.raises(SigningError, match="tsa_url"):
        Pkcs11Sealer(token.key_ref(), level="B-T")
    with pytest.raises(SigningError, match="trust roots"):
        Pkcs11Sealer(token.key_ref(), level="B-LT", tsa_url="http://127.0.0.1:9/tsa")


def test_hsm_seal_is_trusted_bypdfsig(
    hsm_sealer: Pkcs11Sealer, pki: DevPKI, license_pdf: bytes, tmp_path: Path
) -> None:
    sealed = write(tmp_path, "hsm-sealed.pdf", _seal(hsm_sealer, license_pdf))
    report = pdfsig(sealed, nss_db(tmp_path / "nss", pki.root_cert_path))
    assert "Signature is Valid" in report, report
    assert "Certificate is Trusted" in report, report
    assert "ETSI.CAdES.detached" in report
    assert "Total document signed" in report


def test_twenty_seals_use_one_session_and_one_login(
    hsm_sealer: Pkcs11Sealer, pki: DevPKI, license_pdf: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    logins: list[object] = []
    real_open = pkcs11_sealer.open_user_session

    def counting_open(p11_token: Any, pin: str) -> Any:
        session = real_open(p11_token, pin)
        logins.append(session)
        return session

    monkeypatch.setattr(pkcs11_sealer, "open_user_session", counting_open)
    sealed, sessions = [], set()
    for n in range(20):
        sealed.append(_seal(hsm_sealer, license_pdf, field_name=f"Seal{n}"))
        sessions.add(id(hsm_sealer.session))
    assert len(logins) == 1
    assert hsm_sealer.session_opens == 1
    assert sessions == {id(logins[0])}
    assert len({s[len(license_pdf) :] for s in sealed}) == 20  # 20 distinct signatures
    for doc in (sealed[0], sealed[-1]):
        _, status = _validate(doc, pki)
        assert status.intact and status.valid and status.trusted


def test_concurrent_seals_share_the_session(
    hsm_sealer: Pkcs11Sealer, pki: DevPKI, license_pdf: bytes
) -> None:
    results: list[bytes] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            results.append(_seal(hsm_sealer, license_pdf))
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(results) == 4 and hsm_sealer.session_opens == 1
    for doc in results:
        _, status = _validate(doc, pki)
        assert status.intact and status.valid


def test_second_seal_keeps_the_first_valid(
    hsm_sealer: Pkcs11Sealer, pki: DevPKI, license_pdf: bytes
) -> None:
    twice = _seal(hsm_sealer, _seal(hsm_sealer, license_pdf), field_name="EhubSeal2")
    for index in (0, 1):
        _, status = _validate(twice, pki, index)
        assert status.intact and status.valid and status.trusted


def _seal_in_child(sealer: Pkcs11Sealer, pdf: bytes, out: Path) -> None:
    out.write_bytes(_seal(sealer, pdf))
    out.with_suffix(".opens").write_text(str(sealer.session_opens))
    sealer.close()  # the child's own session; the parent's stays logged in


def test_forked_worker_opens_its_own_session(
    hsm_sealer: Pkcs11Sealer, pki: DevPKI, license_pdf: bytes, tmp_path: Path
) -> None:
    _seal(hsm_sealer, license_pdf)  # parent session open before the fork
    parent_session = hsm_sealer.session
    child = multiprocessing.get_context("fork").Process(
        target=_seal_in_child, args=(hsm_sealer, license_pdf, tmp_path / "child.pdf")
    )
    child.start()
    child.join(120)
    assert child.exitcode == 0
    _, status = _validate((tmp_path / "child.pdf").read_bytes(), pki)
    assert status.intact and status.valid and status.trusted
    # PKCS#11 handles do not cross a fork: the child logged in on its own.
    assert (tmp_path / "child.opens").read_text() == "2"
    # The parent's session survived the child's login, sealing and logout.
    _, status = _validate(_seal(hsm_sealer, license_pdf), pki)
    assert status.valid
    assert hsm_sealer.session is parent_session and hsm_sealer.session_opens == 1


def test_close_then_seal_opens_a_new_session(
    hsm_sealer: Pkcs11Sealer, pki: DevPKI, license_pdf: bytes
) -> None:
    _seal(hsm_sealer, license_pdf)
    hsm_sealer.close()
    assert hsm_sealer.session is None
    _, status = _validate(_seal(hsm_sealer, license_pdf), pki)
    assert status.valid and hsm_sealer.session_opens == 2


def test_lost_session_is_reopened_once(
    hsm_sealer: Pkcs11Sealer, pki: DevPKI, license_pdf: bytes
) -> None:
    hsm_sealer.open()
    assert hsm_sealer.session is not None
    hsm_sealer.session.close()  # behind the sealer's back: logout + handle invalid
    _, status = _validate(_seal(hsm_sealer, license_pdf), pki)
    assert status.valid and hsm_sealer.session_opens == 2


def test_unreachable_token_after_loss_is_seal_unavailable(
    hsm_sealer: Pkcs11Sealer, license_pdf: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    hsm_sealer.open()
    assert hsm_sealer.session is not None
    hsm_sealer.session.close()

    def gone(p11_token: Any, pin: str) -> Any:
        raise p11_errors.TokenNotPresent()

    monkeypatch.setattr(pkcs11_sealer, "open_user_session", gone)
    with pytest.raises(SealUnavailable, match="ehub-dev-seal"):
        _seal(hsm_sealer, license_pdf)


# --- key access errors -----------------------------------------------------


def test_wrong_pin_is_a_key_access_error_and_never_retried(
    token: SoftHsmToken, license_pdf: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts: list[str] = []
    real_open = pkcs11_sealer.open_user_session

    def counting_open(p11_token: Any, pin: str) -> Any:
        attempts.append("login")
        return real_open(p11_token, pin)

    monkeypatch.setattr(pkcs11_sealer, "open_user_session", counting_open)
    wrong = "not-the-pin-12345"
    sealer = Pkcs11Sealer(token.key_ref(), pin=wrong)
    with pytest.raises(KeyAccessError, match="wrong or unusable user PIN") as caught:
        sealer.open()
    assert wrong not in str(caught.value) and token.user_pin not in str(caught.value)
    for _ in range(3):  # a batch of documents must not lock a real token
        with pytest.raises(KeyAccessError, match="not retried"):
            _seal(sealer, license_pdf)
    assert attempts == ["login"]
    assert sealer.session is None and sealer.session_opens == 0
    # The right PIN still works: SoftHSM2 counted one failure, no lockout.
    with Pkcs11Sealer(token.key_ref()) as good:
        good.open()
        assert good.session is not None


def test_missing_token_is_a_key_access_error(token: SoftHsmToken) -> None:
    ref = Pkcs11KeyRef(token="no-such-token", object="ehub-seal", module_path=token.module_path)
    with pytest.raises(KeyAccessError, match="no PKCS#11 token labelled 'no-such-token'"):
        Pkcs11Sealer(ref, pin=token.user_pin).open()


def test_missing_key_is_a_key_access_error(token: SoftHsmToken) -> None:
    ref = Pkcs11KeyRef(token=token.token_label, object="absent", module_path=token.module_path)
    sealer = Pkcs11Sealer(ref, pin=token.user_pin)
    with pytest.raises(KeyAccessError, match="lacks a usable key or certificate labelled 'absent'"):
        sealer.open()
    assert sealer.session is None


def test_missing_module_is_a_key_access_error(tmp_path: Path) -> None:
    ref = Pkcs11KeyRef(token="t", object="k", module_path=tmp_path / "libnothing.so")
    with pytest.raises(KeyAccessError, match="cannot load PKCS#11 module"):
        Pkcs11Sealer(ref, pin="1234").open()


def test_missing_pin_is_a_key_access_error(
    token: SoftHsmToken, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(pkcs11_sealer.PIN_ENV, raising=False)
    with pytest.raises(KeyAccessError, match="no PIN"):
        Pkcs11Sealer(Pkcs11KeyRef(token=token.token_label, object=token.key_label))
    ref = Pkcs11KeyRef(token="t", object="k", pin_source=tmp_path / "absent.pin")
    with pytest.raises(KeyAccessError, match="cannot read PIN file"):
        Pkcs11Sealer(ref)


# --- key references ----------------------------------------------------------


def test_key_ref_uri_round_trip(token: SoftHsmToken) -> None:
    ref = token.key_ref()
    uri = ref.uri()
    assert uri.startswith("pkcs11:token=ehub-dev-seal;object=ehub-seal;")
    assert token.user_pin not in uri
    assert is_pkcs11_uri(uri) and not is_pkcs11_uri("/var/pki/seal.p12")
    assert Pkcs11KeyRef.parse(uri) == ref
    odd = Pkcs11KeyRef(token="a b;c", object="键=1", pin_source=Path("/x/y z.pin"))
    assert Pkcs11KeyRef.parse(odd.uri()) == odd


@pytest.mark.parametrize(
    "uri",
    ["pkcs11:object=k", "pkcs11:token=t", "pkcs11:token=t;object=k?pin-value=1234", "file:x"],
)
def test_malformed_key_refs_are_refused(uri: str) -> None:
    with pytest.raises(KeyAccessError):
        Pkcs11KeyRef.parse(uri)


def test_sealer_for_selects_the_back_end(token: SoftHsmToken, pki: DevPKI) -> None:
    hsm = sealer_for(token.key_ref().uri(), level="B-B")
    assert isinstance(hsm, Pkcs11Sealer) and hsm.key_ref == token.key_ref()
    assert hsm.session is None  # selecting a back end opens nothing
    p12 = sealer_for(str(pki.seal_p12_path), passphrase=pki.passphrase)
    assert type(p12) is PadesSealer
    with pytest.raises(KeyAccessError, match="passphrase"):
        sealer_for(str(pki.seal_p12_path))


def test_activate_points_softhsm_at_a_token_directory(
    token: SoftHsmToken, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SOFTHSM2_CONF")
    assert activate(tmp_path) is False and "SOFTHSM2_CONF" not in os.environ
    assert activate(token.directory) is True
    assert os.environ["SOFTHSM2_CONF"] == str(token.conf_path)


# --- CLI ---------------------------------------------------------------------


def test_cli_init_and_show(tmp_path: Path) -> None:
    # A separate process: SoftHSM2 reads its configuration once per process.
    env = {k: v for k, v in os.environ.items() if k != "SOFTHSM2_CONF"}
    env["EHUB_HOME"] = str(tmp_path)

    def ehub(*args: str) -> str:
        run = subprocess.run(
            [sys.executable, "-m", "ehub", "hsm", *args],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        return run.stdout

    first = ehub("init")
    assert "token label:  ehub-dev-seal" in first
    assert "CN=电子证照测试专用章（HSM）" in first
    second = ehub("init")
    assert second == first  # idempotent: same key, same certificate
    shown = ehub("show")
    assert "sensitive, non-extractable" in shown and "can leave" not in shown
    for pin_file in ("so.pin", "user.pin"):
        pin = (tmp_path / "hsm" / pin_file).read_text().strip()
        assert pin not in first + shown
