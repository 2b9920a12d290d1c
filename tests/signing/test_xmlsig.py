"""XMLDSig seals on the license XML: our verifier and xmlsec1 agree, tampering is caught."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree

from ehub.cli_verify import verify
from ehub.records_xml import license_from_xml, license_to_xml
from signing.certstatus import CertStatus
from signing.errors import UnsealableDocument, VerificationError
from signing.pki import DevPKI
from signing.xmlsig import DS_NS, load_seal_material, sign_license_xml, verify_license_xml
from tests.ehub.test_records import make_license
from tests.signing.conftest import write
from tests.signing.verify_support import revoking_crl, seal_cert, xmlsec_verify


@pytest.fixture(scope="module")
def license_xml() -> bytes:
    return license_to_xml(make_license())


@pytest.fixture(scope="module")
def signed_xml(pki: DevPKI, license_xml: bytes) -> bytes:
    key, cert, chain = load_seal_material(pki.seal_p12_path, pki.passphrase)
    return sign_license_xml(license_xml, key, cert, chain)


def _tampered(signed: bytes) -> bytes:
    assert "张三".encode() in signed
    return signed.replace("张三".encode(), "李四".encode())


def test_signature_shape(signed_xml: bytes) -> None:
    root = etree.fromstring(signed_xml)
    sig = root[-1]
    assert sig.tag == f"{{{DS_NS}}}Signature"
    ns = {"ds": DS_NS}
    algs = [el.get("Algorithm") for el in sig.iterfind(".//ds:*[@Algorithm]", ns)]
    assert "http://www.w3.org/2001/10/xml-exc-c14n#" in algs
    assert "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256" in algs
    assert "http://www.w3.org/2000/09/xmldsig#enveloped-signature" in algs
    assert sig.find("ds:SignedInfo/ds:Reference", ns).get("URI") == ""
    # Seal certificate and the issuing intermediate; the root is the verifier's business.
    assert len(sig.findall("ds:KeyInfo/ds:X509Data/ds:X509Certificate", ns)) == 2


def test_valid_and_signed_content_is_the_license(
    pki: DevPKI, license_xml: bytes, signed_xml: bytes
) -> None:
    result = verify_license_xml(signed_xml, [pki.root_cert_path])
    assert result.valid and result.intact and result.trusted, result.reasons
    assert result.cert_status == CertStatus.TRUSTED
    assert result.reasons == ()
    cert = seal_cert(pki)
    assert result.cert_serial == f"{cert.serial_number:X}"
    assert result.seal_name == "电子证照测试专用章"
    assert "CN=电子证照测试专用章" in result.signer_subject
    # What was signed, canonicalized (attributes sorted): the same license.
    assert result.signed_xml is not None and result.signed_xml != license_xml
    assert license_from_xml(result.signed_xml) == license_from_xml(license_xml) == make_license()
    assert result.license_identifier == make_license().identifier


def test_xmlsec1_accepts_our_signature(pki: DevPKI, signed_xml: bytes, tmp_path: Path) -> None:
    run = xmlsec_verify(
        write(tmp_path, "signed.xml", signed_xml), pki.root_cert_path, pki.intermediate_cert_path
    )
    assert run.returncode == 0, run.stderr
    assert "OK" in run.stdout + run.stderr


def test_changed_text_is_rejected_by_both(pki: DevPKI, signed_xml: bytes, tmp_path: Path) -> None:
    tampered = _tampered(signed_xml)
    result = verify_license_xml(tampered, [pki.root_cert_path])
    assert not result.valid and not result.intact
    assert result.reasons == ("the signature does not verify: the signed content was modified",)
    run = xmlsec_verify(
        write(tmp_path, "t.xml", tampered), pki.root_cert_path, pki.intermediate_cert_path
    )
    assert run.returncode != 0
    assert "FAIL" in run.stdout + run.stderr


def test_changed_attribute_is_rejected(pki: DevPKI, signed_xml: bytes) -> None:
    tampered = signed_xml.replace(b'source_version="7"', b'source_version="8"')
    assert tampered != signed_xml
    assert not verify_license_xml(tampered, [pki.root_cert_path]).intact


def test_changed_signed_info_is_rejected(pki: DevPKI, signed_xml: bytes) -> None:
    root = etree.fromstring(signed_xml)
    digest = root.find(f".//{{{DS_NS}}}DigestValue")
    digest.text = "A" + digest.text[1:] if digest.text[0] != "A" else "B" + digest.text[1:]
    result = verify_license_xml(etree.tostring(root), [pki.root_cert_path])
    assert not result.valid and not result.intact
    assert "does not verify" in result.reasons[0]


def test_foreign_root_rejected_by_both(
    pki: DevPKI, other_pki: DevPKI, signed_xml: bytes, tmp_path: Path
) -> None:
    result = verify_license_xml(signed_xml, [other_pki.root_cert_path])
    assert result.intact and not result.valid
    assert result.cert_status == CertStatus.UNTRUSTED_ROOT
    assert result.reasons == ("the seal certificate is not trusted: no path to a given trust root",)
    run = xmlsec_verify(
        write(tmp_path, "s.xml", signed_xml),
        other_pki.root_cert_path,
        other_pki.intermediate_cert_path,
    )
    assert run.returncode != 0
    assert verify_license_xml(signed_xml, [other_pki.root_cert(), pki.root_cert()]).valid


def test_expired_and_revoked(pki: DevPKI, signed_xml: bytes) -> None:
    later = seal_cert(pki).not_valid_after_utc + timedelta(days=1)
    expired = verify_license_xml(signed_xml, [pki.root_cert()], validation_time=later)
    assert expired.intact and not expired.valid and expired.cert_status == CertStatus.EXPIRED

    crl = revoking_crl(pki, seal_cert(pki).serial_number)
    revoked = verify_license_xml(signed_xml, [pki.root_cert()], crls=[crl])
    assert revoked.intact and not revoked.valid and revoked.cert_status == CertStatus.REVOKED
    assert "revoked" in revoked.reasons[0]
    # A CRL revoking another serial changes nothing.
    unrelated = revoking_crl(pki, seal_cert(pki).serial_number + 1)
    assert verify_license_xml(signed_xml, [pki.root_cert()], crls=[unrelated]).valid


def test_license_register_hook(pki: DevPKI, signed_xml: bytes) -> None:
    asked: list[str] = []

    def register(identifier: str) -> str:
        asked.append(identifier)
        return "revoked"

    result = verify_license_xml(signed_xml, [pki.root_cert()], license_status=register)
    assert asked == [make_license().identifier]
    assert result.intact and result.trusted and not result.valid
    assert result.license_status == "revoked"
    assert result.reasons == (
        f"the license {make_license().identifier} is revoked in the register",
    )


def test_unsigned_duplicate_and_unreadable(
    pki: DevPKI, license_xml: bytes, signed_xml: bytes
) -> None:
    unsigned = verify_license_xml(license_xml, [pki.root_cert()])
    assert (
        not unsigned.valid and unsigned.readable and "no enveloped signature" in unsigned.reasons[0]
    )

    root = etree.fromstring(signed_xml)
    root.append(etree.fromstring(etree.tostring(root[-1])))
    twice = verify_license_xml(etree.tostring(root), [pki.root_cert()])
    assert not twice.valid and "more than one signature" in twice.reasons[0]

    junk = verify_license_xml(b"<DZZZ><unclosed></DZZZ>", [pki.root_cert()])
    assert not junk.valid and not junk.readable
    doctype = verify_license_xml(b'<!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>', [pki.root_cert()])
    assert not doctype.readable


def test_sign_refuses_bad_input(pki: DevPKI, signed_xml: bytes) -> None:
    key, cert, chain = load_seal_material(pki.seal_p12_path, pki.passphrase)
    with pytest.raises(UnsealableDocument, match="already"):
        sign_license_xml(signed_xml, key, cert, chain)
    with pytest.raises(UnsealableDocument):
        sign_license_xml(b"not xml", key, cert, chain)


def test_no_trust_roots_is_refused(signed_xml: bytes) -> None:
    with pytest.raises(VerificationError, match="system trust store"):
        verify_license_xml(signed_xml, [])


# --- ehub verify on XML ------------------------------------------------------


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(verify, list(args))
    return result.exit_code, result.output


def test_cli_valid_xml(pki: DevPKI, signed_xml: bytes, tmp_path: Path) -> None:
    path = write(tmp_path, "license.xml", signed_xml)
    code, out = _run(str(path), "--trust", str(pki.root_cert_path))
    assert code == 0, out
    assert "有效 VALID" in out and "电子证照测试专用章" in out

    code, out = _run(str(path), "--json", "--trust", str(pki.root_cert_path))
    report = json.loads(out)
    assert code == 0 and report["valid"] is True and report["kind"] == "xml"
    assert report["result"]["cert_status"] == "trusted"
    assert report["result"]["cert_serial"] == f"{seal_cert(pki).serial_number:X}"


def test_cli_tampered_xml_and_foreign_root(
    pki: DevPKI, other_pki: DevPKI, signed_xml: bytes, tmp_path: Path
) -> None:
    tampered = write(tmp_path, "t.xml", _tampered(signed_xml))
    code, out = _run(str(tampered), "--json", "--trust", str(pki.root_cert_path))
    assert code == 1
    assert json.loads(out)["result"]["reasons"] == [
        "the signature does not verify: the signed content was modified"
    ]
    good = write(tmp_path, "s.xml", signed_xml)
    code, out = _run(str(good), "--trust", str(other_pki.root_cert_path))
    assert code == 1 and "无效 INVALID" in out and "no path to a given trust root" in out


def test_cli_revoked_via_crl_file(pki: DevPKI, signed_xml: bytes, tmp_path: Path) -> None:
    crl = revoking_crl(pki, seal_cert(pki).serial_number).public_bytes(Encoding.DER)
    code, out = _run(
        str(write(tmp_path, "s.xml", signed_xml)),
        "--json",
        "--trust",
        str(pki.root_cert_path),
        "--crl",
        str(write(tmp_path, "seal.crl", crl)),
    )
    assert code == 1
    assert json.loads(out)["result"]["cert_status"] == "revoked"


def test_cli_unreadable_inputs_exit_2(pki: DevPKI, signed_xml: bytes, tmp_path: Path) -> None:
    root = str(pki.root_cert_path)
    assert _run(str(write(tmp_path, "bad.xml", b"<DZZZ><open></DZZZ>")), "--trust", root)[0] == 2
    assert _run(str(write(tmp_path, "x.bin", b"\x00\x01 binary")), "--trust", root)[0] == 2
    assert _run(str(tmp_path / "absent.xml"), "--trust", root)[0] == 2
    code, out = _run(str(write(tmp_path, "s.xml", signed_xml)), "--trust", str(tmp_path / "no.pem"))
    assert code == 2 and "cannot load trust root" in out
