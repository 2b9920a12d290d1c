"""XMLDSig seals by a key in a SoftHSM2 token (Pkcs11Sealer.xml_material).

The token is provisioned at run time by the fixtures of test_pkcs11 (EC
P-256 seal key); an RSA seal key is added to it here. Every signed document
is checked by our verifier and by xmlsec1, an independent implementation.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.x509.oid import NameOID
from lxml import etree
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag
from pkcs11.util.x509 import decode_x509_certificate
from pyhanko.sign import pkcs11 as pyhanko_pkcs11

from ehub.records_xml import license_from_xml, license_to_xml
from signing import pki_build
from signing.certstatus import CertStatus
from signing.errors import KeyAccessError, SigningError
from signing.pkcs11_sealer import Pkcs11KeyRef, Pkcs11Sealer, load_module
from signing.pkcs11_xml import TokenEcKey, TokenRsaKey, issuing_chain, token_key
from signing.pki import DevPKI, _load_key
from signing.softhsm import SoftHsmToken
from signing.xmlsig import DS_NS, sign_license_xml, verify_license_xml
from tests.ehub.test_records import make_license
from tests.signing import test_pkcs11
from tests.signing.conftest import SIGNING_TIME, write
from tests.signing.verify_support import seal_cert, xmlsec_verify

_ECDSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
_RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
_RSA_LABEL = "ehub-seal-rsa"

# test_pkcs11's fixtures; module-scoped, so this module provisions its own token.
token = test_pkcs11.token
hsm_sealer = test_pkcs11.hsm_sealer


@pytest.fixture(scope="module")
def license_xml() -> bytes:
    return license_to_xml(make_license())


@pytest.fixture(scope="module")
def rsa_key_ref(token: SoftHsmToken, pki: DevPKI) -> Pkcs11KeyRef:
    """A second seal key on the token: RSA-2048, generated there, certified by the dev CA."""
    lib = load_module(token.module_path)
    p11_token = lib.get_token(token_label=token.token_label)
    with p11_token.open(rw=True, user_pin=token.user_pin) as session:
        pub, _ = session.generate_keypair(
            KeyType.RSA,
            2048,
            id=b"rsa-seal",
            label=_RSA_LABEL,
            store=True,
            capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
            private_template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False},
        )
        public = rsa.RSAPublicNumbers(
            int.from_bytes(pub[Attribute.PUBLIC_EXPONENT], "big"),
            int.from_bytes(pub[Attribute.MODULUS], "big"),
        ).public_key()
        cert = pki_build.end_entity_cert(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "电子证照测试专用章（RSA）")]),
            public,
            issuer_cert=pki.intermediate_cert(),
            issuer_key=_load_key(pki.intermediate_key_path, pki.passphrase),
            days=30,
            crl_url=None,
        )
        attrs = decode_x509_certificate(cert.public_bytes(serialization.Encoding.DER))
        attrs.update(
            {Attribute.TOKEN: True, Attribute.LABEL: _RSA_LABEL, Attribute.ID: b"rsa-seal"}
        )
        session.create_object(attrs)
    return Pkcs11KeyRef(
        token=token.token_label,
        object=_RSA_LABEL,
        module_path=token.module_path,
        pin_source=token.user_pin_path,
    )


@pytest.fixture
def rsa_sealer(rsa_key_ref: Pkcs11KeyRef) -> Iterator[Pkcs11Sealer]:
    sealer = Pkcs11Sealer(rsa_key_ref)
    yield sealer
    sealer.close()


@pytest.fixture
def mechanisms(monkeypatch: pytest.MonkeyPatch) -> list[Mechanism]:
    """The PKCS#11 mechanisms pyHanko's PKCS11Signer chooses, in call order."""
    chosen: list[Mechanism] = []
    real = pyhanko_pkcs11.select_pkcs11_signing_params

    def spy(*args: Any, **kwargs: Any) -> Any:
        spec = real(*args, **kwargs)
        chosen.append(spec.sign_kwargs["mechanism"])
        return spec

    monkeypatch.setattr(pyhanko_pkcs11, "select_pkcs11_signing_params", spy)
    return chosen


def _sign(sealer: Pkcs11Sealer, xml: bytes) -> bytes:
    key, cert, chain = sealer.xml_material()
    return sign_license_xml(xml, key, cert, chain)


def _signature_method(signed: bytes) -> str:
    method = etree.fromstring(signed).find(f".//{{{DS_NS}}}SignatureMethod")
    assert method is not None
    return str(method.get("Algorithm"))


def _tampered(signed: bytes) -> bytes:
    assert "张三".encode() in signed
    return signed.replace("张三".encode(), "李四".encode())


# --- the material ------------------------------------------------------------


def test_xml_material_is_the_token_certificate_and_its_chain(
    hsm_sealer: Pkcs11Sealer,
    token: SoftHsmToken,
    pki: DevPKI,
) -> None:
    key, cert, chain = hsm_sealer.xml_material()
    assert isinstance(key, TokenEcKey) and isinstance(key, ec.EllipticCurvePrivateKey)
    assert cert == token.certificate()
    # The intermediate only: the root on the token is the verifier's business.
    assert chain == [pki.intermediate_cert()]
    assert key.public_key() == cert.public_key()
    assert key.curve.name == "secp256r1" and key.key_size == 256
    assert hsm_sealer.session is not None and hsm_sealer.session_opens == 1


def test_the_key_object_refuses_export(hsm_sealer: Pkcs11Sealer) -> None:
    key, _, _ = hsm_sealer.xml_material()
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    with pytest.raises(KeyAccessError, match="stays in its PKCS#11 token"):
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    with pytest.raises(KeyAccessError, match="not exportable"):
        key.private_numbers()
    with pytest.raises(KeyAccessError, match="no ECDH"):
        key.exchange(ec.ECDH(), ec.generate_private_key(ec.SECP256R1()).public_key())
    assert copy.deepcopy(key) is key and copy.copy(key) is key
    assert repr(key) == "TokenEcKey('ehub-dev-seal/ehub-seal', secp256r1)"


def test_the_key_signs_what_cryptography_would(hsm_sealer: Pkcs11Sealer) -> None:
    key, cert, _ = hsm_sealer.xml_material()
    public = cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    for digest in (hashes.SHA256(), hashes.SHA384(), hashes.SHA512()):
        signature = key.sign(b"some SignedInfo", ec.ECDSA(digest))  # DER, as cryptography's
        public.verify(signature, b"some SignedInfo", ec.ECDSA(digest))
    for refused in (ec.ECDSA(hashes.SHA1()), ec.ECDSA(Prehashed(hashes.SHA256()))):
        with pytest.raises(UnsupportedAlgorithm):
            key.sign(b"x", refused)


# --- signing and verifying ---------------------------------------------------


def test_token_signed_xml_is_valid(
    hsm_sealer: Pkcs11Sealer,
    token: SoftHsmToken,
    pki: DevPKI,
    license_xml: bytes,
) -> None:
    signed = _sign(hsm_sealer, license_xml)
    assert _signature_method(signed) == _ECDSA_SHA256
    result = verify_license_xml(signed, [pki.root_cert_path])
    assert result.valid and result.intact and result.trusted, result.reasons
    assert result.cert_status == CertStatus.TRUSTED
    assert result.seal_name == "电子证照测试专用章（HSM）"
    assert result.cert_serial == f"{token.certificate().serial_number:X}"
    assert result.signed_xml is not None
    assert license_from_xml(result.signed_xml) == make_license()


def test_xmlsec1_accepts_the_token_signature_and_rejects_tampering(
    hsm_sealer: Pkcs11Sealer,
    pki: DevPKI,
    license_xml: bytes,
    tmp_path: Path,
) -> None:
    signed = _sign(hsm_sealer, license_xml)
    run = xmlsec_verify(
        write(tmp_path, "signed.xml", signed), pki.root_cert_path, pki.intermediate_cert_path
    )
    assert run.returncode == 0, run.stderr
    assert "OK" in run.stdout + run.stderr

    tampered = _tampered(signed)
    run = xmlsec_verify(
        write(tmp_path, "tampered.xml", tampered), pki.root_cert_path, pki.intermediate_cert_path
    )
    assert run.returncode != 0
    assert "FAIL" in run.stdout + run.stderr
    result = verify_license_xml(tampered, [pki.root_cert_path])
    assert not result.valid and not result.intact
    assert result.reasons == ("the signature does not verify: the signed content was modified",)


def test_foreign_root_does_not_trust_the_token_seal(
    hsm_sealer: Pkcs11Sealer,
    other_pki: DevPKI,
    license_xml: bytes,
) -> None:
    result = verify_license_xml(_sign(hsm_sealer, license_xml), [other_pki.root_cert_path])
    assert result.intact and not result.valid
    assert result.cert_status == CertStatus.UNTRUSTED_ROOT


def test_rsa_token_key_signs_xml(
    rsa_sealer: Pkcs11Sealer,
    pki: DevPKI,
    license_xml: bytes,
    mechanisms: list[Mechanism],
    tmp_path: Path,
) -> None:
    key, _, chain = rsa_sealer.xml_material()
    assert isinstance(key, TokenRsaKey) and isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == 2048 and chain == [pki.intermediate_cert()]
    with pytest.raises(KeyAccessError, match="not exportable"):
        key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    with pytest.raises(KeyAccessError, match="no decryption"):
        key.decrypt(b"\x00" * 256, padding.PKCS1v15())
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    with pytest.raises(UnsupportedAlgorithm, match=r"PKCS#1 v1\.5"):
        key.sign(b"x", pss, hashes.SHA256())

    signed = _sign(rsa_sealer, license_xml)
    assert _signature_method(signed) == _RSA_SHA256
    # The sealer's raw mode: CKM_RSA_PKCS over a DigestInfo, as for its PDFs.
    assert mechanisms == [Mechanism.RSA_PKCS]
    result = verify_license_xml(signed, [pki.root_cert_path])
    assert result.valid, result.reasons
    assert result.seal_name == "电子证照测试专用章（RSA）"
    run = xmlsec_verify(
        write(tmp_path, "rsa.xml", signed), pki.root_cert_path, pki.intermediate_cert_path
    )
    assert run.returncode == 0, run.stderr
    assert not verify_license_xml(_tampered(signed), [pki.root_cert_path]).intact


# --- one session, one lock, pyHanko's mechanism --------------------------------


def test_xml_and_pdf_share_session_and_mechanism(
    hsm_sealer: Pkcs11Sealer,
    pki: DevPKI,
    license_xml: bytes,
    license_pdf: bytes,
    mechanisms: list[Mechanism],
) -> None:
    hsm_sealer.seal(license_pdf, reason="电子证照签章", location="济南", signing_time=SIGNING_TIME)
    pdf_session = hsm_sealer.session
    signed = [_sign(hsm_sealer, license_xml) for _ in range(3)]
    assert hsm_sealer.session is pdf_session and hsm_sealer.session_opens == 1
    # CKM_ECDSA over the digest (SoftHSM2 has no CKM_ECDSA_SHA256), for both.
    assert mechanisms == [Mechanism.ECDSA] * 4
    assert len(set(signed)) == 3  # ECDSA: a fresh signature each time
    for doc in signed:
        assert verify_license_xml(doc, [pki.root_cert_path]).valid


def test_xml_signature_waits_for_the_sealer_lock(
    hsm_sealer: Pkcs11Sealer,
    pki: DevPKI,
    license_xml: bytes,
) -> None:
    key, cert, chain = hsm_sealer.xml_material()
    done = threading.Event()
    out: list[bytes] = []

    def sign() -> None:
        out.append(sign_license_xml(license_xml, key, cert, chain))
        done.set()

    with hsm_sealer._lock:  # as a PDF signature in progress holds it
        worker = threading.Thread(target=sign)
        worker.start()
        assert not done.wait(0.5), "the XML signature did not wait for the sealer's lock"
    worker.join(30)
    assert done.is_set() and verify_license_xml(out[0], [pki.root_cert_path]).valid


def test_concurrent_xml_and_pdf_signatures(
    hsm_sealer: Pkcs11Sealer,
    pki: DevPKI,
    license_xml: bytes,
    license_pdf: bytes,
) -> None:
    key, cert, chain = hsm_sealer.xml_material()
    xml_out: list[bytes] = []
    errors: list[BaseException] = []

    def xml_work() -> None:
        try:
            for _ in range(3):
                xml_out.append(sign_license_xml(license_xml, key, cert, chain))
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    def pdf_work() -> None:
        try:
            hsm_sealer.seal(license_pdf, reason="r", location="l", signing_time=SIGNING_TIME)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=xml_work) for _ in range(4)]
    threads += [threading.Thread(target=pdf_work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert len(xml_out) == 12 and hsm_sealer.session_opens == 1
    for doc in xml_out:
        assert verify_license_xml(doc, [pki.root_cert_path]).valid


def test_lost_session_is_reopened_for_xml(
    hsm_sealer: Pkcs11Sealer,
    pki: DevPKI,
    license_xml: bytes,
) -> None:
    key, cert, chain = hsm_sealer.xml_material()
    assert hsm_sealer.session is not None
    hsm_sealer.session.close()  # behind the sealer's back
    signed = sign_license_xml(license_xml, key, cert, chain)
    assert verify_license_xml(signed, [pki.root_cert_path]).valid
    assert hsm_sealer.session_opens == 2


def test_unknown_digest_is_refused_by_the_sealer(hsm_sealer: Pkcs11Sealer) -> None:
    with pytest.raises(SigningError, match="unsupported digest 'md5'"):
        hsm_sealer.sign_raw(b"x", "md5")
    assert hsm_sealer.session is None  # refused before touching the token


# --- the key object against a fake signer ------------------------------------


class _SoftwareSigner:
    """A strict fake RawSigner: a software key, and the calls it received."""

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        self.key = key
        self.calls: list[tuple[bytes, str]] = []

    def sign_raw(self, data: bytes, digest_algorithm: str) -> bytes:
        self.calls.append((data, digest_algorithm))
        digest = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384()}[digest_algorithm]
        return self.key.sign(data, ec.ECDSA(digest))


def _self_signed(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(SIGNING_TIME)
        .not_valid_after(SIGNING_TIME.replace(year=2030))
        .sign(key, hashes.SHA256())
    )


def test_key_passes_data_and_digest_to_the_signer() -> None:
    fake = _SoftwareSigner(ec.generate_private_key(ec.SECP384R1()))
    key = token_key(fake, _self_signed(fake.key), "fake/key")
    assert isinstance(key, TokenEcKey) and key.key_size == 384
    key.sign(bytearray(b"abc"), ec.ECDSA(hashes.SHA384()))
    assert fake.calls == [(b"abc", "sha384")]


def test_key_and_certificate_mismatch_is_a_key_access_error(license_xml: bytes) -> None:
    fake = _SoftwareSigner(ec.generate_private_key(ec.SECP256R1()))
    other = ec.generate_private_key(ec.SECP256R1())
    key = token_key(fake, _self_signed(other), "fake/key")
    with pytest.raises(KeyAccessError, match="do not match"):
        sign_license_xml(license_xml, key, _self_signed(other))


def test_issuing_chain_follows_issuers_and_drops_roots(pki: DevPKI, other_pki: DevPKI) -> None:
    leaf = seal_cert(pki)
    # The two dev PKIs name their CAs alike: only the signature tells them apart.
    assert other_pki.intermediate_cert().subject == pki.intermediate_cert().subject
    candidates = [
        other_pki.intermediate_cert(),
        pki.root_cert(),
        pki.intermediate_cert(),
        leaf,
    ]
    assert issuing_chain(leaf, candidates) == [pki.intermediate_cert()]
    assert issuing_chain(leaf, [pki.root_cert(), other_pki.intermediate_cert()]) == []
