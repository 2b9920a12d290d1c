"""PadesSealer: PAdES B-B signatures, key loading and error translation."""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, pkcs12
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature

from signing.errors import KeyAccessError, UnsealableDocument
from signing.pades import PadesSealer, Sealer
from signing.pki import DevPKI
from signing.render import SEAL_BOX
from signing.verify import verify_pdf
from tests.signing.conftest import SIGNING_TIME, write


def _signature(pdf: bytes, index: int = 0) -> EmbeddedPdfSignature:
    return PdfFileReader(io.BytesIO(pdf)).embedded_regular_signatures[index]


def test_is_a_sealer(sealer: PadesSealer) -> None:
    assert isinstance(sealer, Sealer)
    assert sealer.seal_name == "电子证照测试专用章"


def test_seal_is_an_incremental_pades_signature(license_pdf: bytes, sealed_pdf: bytes) -> None:
    assert sealed_pdf.startswith(license_pdf)  # original revision untouched
    sig = _signature(sealed_pdf)
    assert sig.field_name == "EhubSeal1"
    assert sig.sig_object["/SubFilter"] == "/ETSI.CAdES.detached"
    assert sig.sig_object["/Reason"] == "电子证照签章"
    assert sig.sig_object["/Location"] == "济南"
    assert sig.self_reported_timestamp == SIGNING_TIME


def test_visible_stamp_sits_in_the_seal_box(sealed_pdf: bytes) -> None:
    annot = _signature(sealed_pdf).sig_field
    rect = [round(float(v)) for v in annot["/Rect"]]
    assert rect == list(SEAL_BOX)
    assert "/AP" in annot


def test_invisible_seal(pki: DevPKI, license_pdf: bytes) -> None:
    sealer = PadesSealer(pki.seal_p12_path, pki.passphrase, visible=False)
    sealed = sealer.seal(license_pdf, reason="r", location="l", signing_time=SIGNING_TIME)
    rect = [float(v) for v in _signature(sealed).sig_field["/Rect"]]
    assert rect == [0, 0, 0, 0]
    assert verify_pdf(sealed, [pki.root_cert()]).valid


def test_sealed_pdf_verifies(pki: DevPKI, sealed_pdf: bytes) -> None:
    result = verify_pdf(sealed_pdf, [pki.root_cert()])
    assert result.valid, result.reasons
    assert result.signing_time == SIGNING_TIME
    assert result.digest_algorithm == "sha256"
    assert "CN=电子证照测试专用章" in result.signer_subject


def test_second_seal_keeps_the_first_valid(
    pki: DevPKI, sealer: PadesSealer, sealed_pdf: bytes
) -> None:
    twice = sealer.seal(
        sealed_pdf,
        field_name="EhubSeal2",
        reason="复核",
        location="济南",
        signing_time=SIGNING_TIME,
    )
    result = verify_pdf(twice, [pki.root_cert()])
    assert result.signature_count == 2
    assert result.valid, result.reasons


def test_signing_time_defaults_to_now(sealer: PadesSealer, license_pdf: bytes) -> None:
    before = datetime.now().astimezone()
    sealed = sealer.seal(license_pdf, reason="r", location="l")
    stamped = _signature(sealed).self_reported_timestamp
    assert stamped is not None
    assert (stamped - before).total_seconds() > -2


def test_naive_signing_time_is_refused(sealer: PadesSealer, license_pdf: bytes) -> None:
    with pytest.raises(ValueError, match="timezone"):
        sealer.seal(license_pdf, reason="r", location="l", signing_time=datetime(2024, 1, 1))


def test_garbage_input_is_unsealable(sealer: PadesSealer) -> None:
    with pytest.raises(UnsealableDocument):
        sealer.seal(b"not a pdf at all", reason="r", location="l", signing_time=SIGNING_TIME)


def test_existing_field_name_is_unsealable(sealer: PadesSealer, sealed_pdf: bytes) -> None:
    with pytest.raises(UnsealableDocument, match="EhubSeal1"):
        sealer.seal(sealed_pdf, reason="r", location="l", signing_time=SIGNING_TIME)


def test_wrong_passphrase_is_a_key_access_error(pki: DevPKI) -> None:
    with pytest.raises(KeyAccessError, match="passphrase") as caught:
        PadesSealer(pki.seal_p12_path, "not-the-passphrase")
    assert pki.passphrase not in str(caught.value)


def test_missing_key_store_is_a_key_access_error(tmp_path: Path) -> None:
    with pytest.raises(KeyAccessError, match="cannot read"):
        PadesSealer(tmp_path / "absent.p12", "x")


def test_corrupt_key_store_is_a_key_access_error(tmp_path: Path) -> None:
    with pytest.raises(KeyAccessError):
        PadesSealer(write(tmp_path, "bad.p12", b"\x30\x03\x02\x01\x03"), "x")


def test_key_store_without_key_is_a_key_access_error(pki: DevPKI, tmp_path: Path) -> None:
    bundle = pkcs12.serialize_key_and_certificates(
        b"cert-only", None, pki.root_cert(), None, BestAvailableEncryption(b"pw")
    )
    with pytest.raises(KeyAccessError, match="lacks the private key"):
        PadesSealer(write(tmp_path, "cert-only.p12", bundle), "pw")


def _red_pixels_in_seal_box(pdf: bytes, tmp_path: Path) -> int:
    import subprocess

    from PIL import Image

    from signing.render import PAGE_HEIGHT, SEAL_BOX

    src = tmp_path / "s.pdf"
    src.write_bytes(pdf)
    subprocess.run(["pdftoppm", "-r", "72", "-png", "-singlefile", str(src), str(tmp_path / "p")],
                   check=True)  # fmt: skip
    x1, y1, x2, y2 = SEAL_BOX
    with Image.open(tmp_path / "p.png") as page:
        box = page.convert("RGB").crop((x1, int(PAGE_HEIGHT - y2), x2, int(PAGE_HEIGHT - y1)))
        return sum(1 for r, g, b in box.getdata() if r > 150 and g < 100 and b < 100)


def test_the_seal_picture_is_the_visible_stamp(
    pki: DevPKI, license_pdf: bytes, tmp_path: Path
) -> None:
    from ehub.seal_image import render_seal_png

    picture = tmp_path / "seal.png"
    picture.write_bytes(render_seal_png("济南市市场监督管理局", "电子证照专用章"))
    with_picture = PadesSealer(pki.seal_p12_path, pki.passphrase, stamp_image=picture).seal(
        license_pdf, reason="r", location="l"
    )
    assert verify_pdf(with_picture, [pki.root_cert_path]).valid
    framed = PadesSealer(pki.seal_p12_path, pki.passphrase).seal(
        license_pdf, reason="r", location="l"
    )
    # A red round seal fills far more of the box than the framed text stamp.
    assert _red_pixels_in_seal_box(with_picture, tmp_path) > 2 * _red_pixels_in_seal_box(
        framed, tmp_path
    )
