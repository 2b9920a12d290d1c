"""GB/T 38540 SESeal / SES_Signature: structure (via ``openssl asn1parse``) and verification.

The structure tests decode the DER with OpenSSL's ASN.1 parser, an decoder
independent of asn1crypto, and compare nesting depth, universal types and
values with STANDARDS.md §4. The rejection tests cover each bad input of
issue 10 that lives below the OFD layer.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from signing import ses, ses_verify, sm2, sm2_cert
from signing.errors import SealFormatError

UTC = dt.UTC
T0 = dt.datetime(2024, 1, 1, tzinfo=UTC)
SIGNED_AT = dt.datetime(2024, 5, 20, 1, 30, tzinfo=UTC)
SIGNATURE_XML = b'<?xml version="1.0" encoding="UTF-8"?><ofd:Signature/>'
PROPERTY_INFO = "/Doc_0/Signs/Sign_0/Signature.xml"
SEAL_NAME = "济南市历下区市场监督管理局电子证照专用章"
# DER of OID 1.2.156.10197.1.501 (SM3withSM2), as asn1parse only prints its name.
SM3_WITH_SM2_DER = bytes.fromhex("06082a811ccf55018375")


@pytest.fixture(scope="module")
def pki() -> sm2_cert.DevSm2Pki:
    return sm2_cert.make_dev_sm2_pki(T0)


@pytest.fixture(scope="module")
def other_pki() -> sm2_cert.DevSm2Pki:
    return sm2_cert.make_dev_sm2_pki(T0, maker_name="untrusted maker", signer_name="other")


def seal_spec(signer_cert: bytes, **changes: object) -> ses.SealSpec:
    spec = ses.SealSpec(
        es_id="37010200000001",
        name=SEAL_NAME,
        signer_certs=[signer_cert],
        picture=ses.SealPicture("PNG", b"\x89PNG\r\n\x1a\n not really", 42, 42),
        create_date=T0,
        valid_start=T0,
        valid_end=T0 + dt.timedelta(days=365),
    )
    return dataclasses.replace(spec, **changes)  # type: ignore[arg-type]


def make(
    pki: sm2_cert.DevSm2Pki,
    *,
    maker: sm2_cert.DevSm2Pki | None = None,
    signed_at: dt.datetime = SIGNED_AT,
    **spec_changes: object,
) -> bytes:
    maker = maker or pki
    seal = ses.make_seal(
        seal_spec(pki.signer_cert, **spec_changes),
        maker_key=maker.maker_key,
        maker_cert=maker.maker_cert,
    )
    return ses.make_signature(
        seal,
        sm2.sm3(SIGNATURE_XML),
        pki.signer_cert,
        pki.signer_key,
        signing_time=signed_at,
        property_info=PROPERTY_INFO,
    )


def verify(signature: bytes, pki: sm2_cert.DevSm2Pki) -> ses_verify.SesVerification:
    return ses_verify.verify_signature(
        signature, signed_data=SIGNATURE_XML, trusted_seal_makers=[pki.maker_cert]
    )


_LINE = re.compile(r"^\s*(\d+):d=(\d+)\s+hl=\s*\d+\s+l=\s*\d+\s+(?:prim|cons):\s*(.*)$")


def asn1parse(der: bytes, tmp_path: Path) -> list[tuple[int, int, str, str]]:
    """(offset, depth, type, value) per element, from ``openssl asn1parse -inform DER``."""
    openssl = shutil.which("openssl")
    assert openssl, "the openssl CLI is required by these tests"
    path = tmp_path / "structure.der"
    path.write_bytes(der)
    result = subprocess.run(
        [openssl, "asn1parse", "-inform", "DER", "-in", str(path)],
        capture_output=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    rows = []
    for line in result.stdout.decode().splitlines():
        match = _LINE.match(line)
        assert match, f"unexpected asn1parse line: {line!r}"
        kind, _, value = match.group(3).partition(":")
        kind = kind.replace("[HEX DUMP]", "").strip()  # OCTET STRING [HEX DUMP]:...
        rows.append((int(match.group(1)), int(match.group(2)), kind, value.strip()))
    return rows


def seal_rows(base: int, name: str = SEAL_NAME) -> list[tuple[int, str, str | None]]:
    """Expected SESeal rows at depth ``base`` (``None`` = any value)."""
    d = base
    return [
        (d, "SEQUENCE", ""),  # SESeal
        (d + 1, "SEQUENCE", ""),  # SES_SealInfo
        (d + 2, "SEQUENCE", ""),  # SES_Header
        (d + 3, "IA5STRING", "ES"),
        (d + 3, "INTEGER", "04"),
        (d + 3, "IA5STRING", "ehub"),
        (d + 2, "IA5STRING", "37010200000001"),  # esID
        (d + 2, "SEQUENCE", ""),  # SES_ESPropertyInfo
        (d + 3, "INTEGER", "01"),  # type: unit seal
        (d + 3, "UTF8STRING", name),
        (d + 3, "INTEGER", "01"),  # certListType: certificates
        (d + 3, "SEQUENCE", ""),  # certList
        (d + 4, "OCTET STRING", None),  # the signer certificate
        (d + 3, "GENERALIZEDTIME", "20240101000000Z"),  # createDate
        (d + 3, "GENERALIZEDTIME", "20240101000000Z"),  # validStart
        (d + 3, "GENERALIZEDTIME", "20241231000000Z"),  # validEnd
        (d + 2, "SEQUENCE", ""),  # SES_ESPictrueInfo
        (d + 3, "IA5STRING", "PNG"),
        (d + 3, "OCTET STRING", None),
        (d + 3, "INTEGER", "2A"),
        (d + 3, "INTEGER", "2A"),
        (d + 1, "OCTET STRING", None),  # seal maker certificate
        (d + 1, "OBJECT", "SM2-with-SM3"),  # signAlgID 1.2.156.10197.1.501
        (d + 1, "BIT STRING", ""),  # signedValue
    ]


def matches(
    der: bytes,
    actual: list[tuple[int, int, str, str]],
    expected: list[tuple[int, str, str | None]],
) -> None:
    assert len(actual) == len(expected), actual
    for (offset, *got), want in zip(actual, expected, strict=True):
        if want[1] == "OBJECT":  # asn1parse prints the name; check the OID bytes too
            assert der[offset : offset + len(SM3_WITH_SM2_DER)] == SM3_WITH_SM2_DER
        assert tuple(got[:2]) == want[:2], (got, want)
        if want[2] is not None:
            assert got[2] == want[2], (got, want)


def test_seseal_structure_per_openssl_asn1parse(pki: sm2_cert.DevSm2Pki, tmp_path: Path) -> None:
    seal = ses.make_seal(
        seal_spec(pki.signer_cert), maker_key=pki.maker_key, maker_cert=pki.maker_cert
    )
    matches(seal, asn1parse(seal, tmp_path), seal_rows(0))


def test_ses_signature_structure_per_openssl_asn1parse(
    pki: sm2_cert.DevSm2Pki, tmp_path: Path
) -> None:
    signature = make(pki)
    expected = [
        (0, "SEQUENCE", ""),  # SES_Signature
        (1, "SEQUENCE", ""),  # TBS_Sign
        (2, "INTEGER", "04"),  # version
        *seal_rows(2),  # eseal
        (2, "GENERALIZEDTIME", "20240520013000Z"),  # timeInfo
        (2, "BIT STRING", ""),  # dataHash
        (2, "IA5STRING", PROPERTY_INFO),  # propertyInfo
        (1, "OCTET STRING", None),  # signer certificate
        (1, "OBJECT", "SM2-with-SM3"),  # signatureAlgID
        (1, "BIT STRING", ""),  # signature
    ]
    matches(signature, asn1parse(signature, tmp_path), expected)
    decoded = ses.decode_signature(signature)
    assert decoded.data_hash == sm2.sm3(SIGNATURE_XML)
    assert decoded.data_hash in signature


def test_timestamp_is_an_optional_trailing_bit_string(
    pki: sm2_cert.DevSm2Pki, tmp_path: Path
) -> None:
    seal = ses.decode_signature(make(pki)).seal_der
    stamped = ses.make_signature(
        seal,
        sm2.sm3(SIGNATURE_XML),
        pki.signer_cert,
        pki.signer_key,
        signing_time=SIGNED_AT,
        property_info=PROPERTY_INFO,
        timestamp=b"rfc3161-token",
    )
    rows = asn1parse(stamped, tmp_path)
    assert [r[1:3] for r in rows if r[1] == 1][-2:] == [(1, "BIT STRING"), (1, "BIT STRING")]
    assert ses.decode_signature(stamped).timestamp == b"rfc3161-token"
    assert verify(stamped, pki).valid


def test_ofdrw_tagged_timestamp_is_read(pki: sm2_cert.DevSm2Pki) -> None:
    plain = ses.SESSignature.load(make(pki))
    tagged = ses.SESSignature(
        {
            "toSign": plain["toSign"],
            "cert": plain["cert"],
            "signatureAlgID": plain["signatureAlgID"],
            "signature": plain["signature"],
            "timeStampTagged": b"token",
        }
    ).dump()
    assert tagged[-10:] == b"\xa0\x08\x03\x06\x00token"  # [0] EXPLICIT { BIT STRING }
    assert ses.decode_signature(tagged).timestamp == b"token"


def test_decode_round_trip(pki: sm2_cert.DevSm2Pki) -> None:
    decoded = ses.decode_signature(make(pki))
    assert decoded.version == 4
    assert decoded.time_info == SIGNED_AT
    assert decoded.property_info == PROPERTY_INFO
    assert decoded.signer_cert == pki.signer_cert
    assert decoded.signature_alg == "1.2.156.10197.1.501"
    assert decoded.timestamp is None
    seal = decoded.seal
    assert (seal.header_id, seal.version, seal.vid) == ("ES", 4, "ehub")
    assert (seal.name, seal.seal_type, seal.cert_list_type) == (SEAL_NAME, 1, 1)
    assert seal.certs == (pki.signer_cert,)
    assert seal.maker_cert == pki.maker_cert
    assert seal.picture.width_mm == 42 and seal.picture.type == "PNG"
    assert ses.decode_seal(decoded.seal_der) == seal


def test_valid_signature_verifies(pki: sm2_cert.DevSm2Pki) -> None:
    result = verify(make(pki), pki)
    assert result.valid, result.problems
    assert result.signature is not None


def test_cert_digest_list_seal_verifies(pki: sm2_cert.DevSm2Pki) -> None:
    signature = make(pki, cert_list_type=2)
    seal = ses.decode_signature(signature).seal
    assert seal.cert_digests == (("SM3", sm2.sm3(pki.signer_cert)),)
    assert verify(signature, pki).valid


def test_rejects_tampered_signed_data(pki: sm2_cert.DevSm2Pki) -> None:
    result = ses_verify.verify_signature(
        make(pki), signed_data=SIGNATURE_XML + b" ", trusted_seal_makers=[pki.maker_cert]
    )
    assert result.reasons == {ses_verify.SesReason.DATA_HASH_MISMATCH}


def test_rejects_tampered_data_hash_field(pki: sm2_cert.DevSm2Pki) -> None:
    signature = make(pki)
    digest = sm2.sm3(SIGNATURE_XML)
    forged = signature.replace(digest, sm2.sm3(b"other content"))
    result = ses_verify.verify_signature(
        forged, signed_data=b"other content", trusted_seal_makers=[pki.maker_cert]
    )
    assert result.reasons == {ses_verify.SesReason.SIGNATURE_INVALID}


def test_rejects_seal_of_untrusted_maker(
    pki: sm2_cert.DevSm2Pki, other_pki: sm2_cert.DevSm2Pki
) -> None:
    result = verify(make(pki, maker=other_pki), pki)
    assert result.reasons == {ses_verify.SesReason.SEAL_MAKER_UNTRUSTED}


def test_rejects_seal_with_forged_maker_signature(pki: sm2_cert.DevSm2Pki) -> None:
    # A seal claiming the trusted maker's certificate but signed by another key.
    forger = sm2.SM2PrivateKey.generate()
    seal = ses.make_seal(seal_spec(pki.signer_cert), maker_key=forger, maker_cert=pki.maker_cert)
    signature = ses.make_signature(
        seal,
        sm2.sm3(SIGNATURE_XML),
        pki.signer_cert,
        pki.signer_key,
        signing_time=SIGNED_AT,
        property_info=PROPERTY_INFO,
    )
    assert verify(signature, pki).reasons == {ses_verify.SesReason.SEAL_SIGNATURE_INVALID}


def test_rejects_expired_and_not_yet_valid_seal(pki: sm2_cert.DevSm2Pki) -> None:
    expired = make(pki, valid_end=SIGNED_AT - dt.timedelta(seconds=1))
    assert verify(expired, pki).reasons == {ses_verify.SesReason.SEAL_EXPIRED}
    early = make(
        pki,
        valid_start=SIGNED_AT + dt.timedelta(days=1),
        valid_end=SIGNED_AT + dt.timedelta(days=30),
    )
    assert verify(early, pki).reasons == {ses_verify.SesReason.SEAL_NOT_YET_VALID}


def test_rejects_signer_absent_from_seal(
    pki: sm2_cert.DevSm2Pki, other_pki: sm2_cert.DevSm2Pki
) -> None:
    for cert_list_type in (1, 2):
        signature = make(pki, signer_certs=[other_pki.signer_cert], cert_list_type=cert_list_type)
        assert verify(signature, pki).reasons == {ses_verify.SesReason.SIGNER_NOT_IN_SEAL}


def test_rejects_signer_certificate_outside_validity(pki: sm2_cert.DevSm2Pki) -> None:
    late = SIGNED_AT + dt.timedelta(days=3650 * 2)
    signature = make(pki, signed_at=late, valid_end=late + dt.timedelta(days=1))
    assert verify(signature, pki).reasons == {ses_verify.SesReason.SIGNER_CERT_NOT_VALID}


@pytest.mark.parametrize("cut", [1, 10, 80, 500])
def test_rejects_truncated_signature(pki: sm2_cert.DevSm2Pki, cut: int) -> None:
    result = verify(make(pki)[:-cut], pki)
    assert result.reasons == {ses_verify.SesReason.MALFORMED}
    assert result.signature is None


def test_rejects_garbage_and_trailing_bytes(pki: sm2_cert.DevSm2Pki) -> None:
    assert verify(b"not der at all", pki).reasons == {ses_verify.SesReason.MALFORMED}
    assert verify(make(pki) + b"\x00", pki).reasons == {ses_verify.SesReason.MALFORMED}
    with pytest.raises(SealFormatError):
        ses.decode_seal(b"\x30\x00")


def test_building_refuses_bad_values(pki: sm2_cert.DevSm2Pki) -> None:
    seal = ses.decode_signature(make(pki)).seal_der
    with pytest.raises(SealFormatError, match="dataHash"):
        ses.make_signature(
            seal,
            b"short",
            pki.signer_cert,
            pki.signer_key,
            signing_time=SIGNED_AT,
            property_info=PROPERTY_INFO,
        )
    with pytest.raises(SealFormatError, match="timezone"):
        ses.make_seal(
            seal_spec(pki.signer_cert, create_date=dt.datetime(2024, 1, 1)),
            maker_key=pki.maker_key,
            maker_cert=pki.maker_cert,
        )
    with pytest.raises(SealFormatError, match="signer certificate"):
        ses.make_seal(
            seal_spec(pki.signer_cert, signer_certs=[]),
            maker_key=pki.maker_key,
            maker_cert=pki.maker_cert,
        )
    with pytest.raises(SealFormatError, match="not a DER SESeal"):
        ses.make_signature(
            seal[:-4],
            sm2.sm3(b""),
            pki.signer_cert,
            pki.signer_key,
            signing_time=SIGNED_AT,
            property_info=PROPERTY_INFO,
        )
