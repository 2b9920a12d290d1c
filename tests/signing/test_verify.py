"""verify_pdf: verdicts for valid, tampered, foreign, modified and unsigned PDFs."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

import pytest
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader

from signing.errors import VerificationError
from signing.pki import DevPKI
from signing.verify import verify_pdf
from tests.signing.conftest import write


def test_valid_with_root_as_object_or_path(pki: DevPKI, sealed_pdf: bytes) -> None:
    for roots in ([pki.root_cert()], [pki.root_cert_path], [str(pki.root_cert_path)]):
        result = verify_pdf(sealed_pdf, roots)
        assert result.valid and result.intact and result.trusted, result.reasons
        assert result.covers_whole_document
        assert result.reasons == ()
        assert result.signature_count == 1


def test_tampered_byte_breaks_integrity(
    pki: DevPKI, sealed_pdf: bytes, tampered_pdf: bytes
) -> None:
    # The flipped byte lies inside the first signed range.
    byte_range = PdfFileReader(io.BytesIO(sealed_pdf)).embedded_regular_signatures[0].byte_range
    flipped = next(
        i for i, (a, b) in enumerate(zip(sealed_pdf, tampered_pdf, strict=True)) if a != b
    )
    assert byte_range[0] <= flipped < byte_range[1]

    result = verify_pdf(tampered_pdf, [pki.root_cert()])
    assert not result.intact
    assert not result.valid
    assert any("modified" in r for r in result.reasons)


def test_foreign_root_is_not_trusted(pki: DevPKI, other_pki: DevPKI, sealed_pdf: bytes) -> None:
    result = verify_pdf(sealed_pdf, [other_pki.root_cert()])
    assert result.intact
    assert not result.trusted
    assert not result.valid
    assert any("not trusted" in r for r in result.reasons)
    # Trusting both roots makes it valid again.
    assert verify_pdf(sealed_pdf, [other_pki.root_cert(), pki.root_cert()]).valid


def test_content_added_after_sealing_is_not_valid(pki: DevPKI, sealed_pdf: bytes) -> None:
    writer = IncrementalPdfFileWriter(io.BytesIO(sealed_pdf))
    page = writer.root["/Pages"]["/Kids"][0].get_object()
    forged = writer.add_object(generic.StreamObject(stream_data=b"BT 100 300 Td (FORGED) Tj ET"))
    page["/Contents"] = generic.ArrayObject([page.raw_get("/Contents"), forged])
    writer.update_container(page)
    out = io.BytesIO()
    writer.write(out)

    result = verify_pdf(out.getvalue(), [pki.root_cert()])
    assert result.intact and result.trusted  # the signed revision itself is fine...
    assert not result.covers_whole_document
    assert not result.valid  # ...but what one sees is not what was sealed
    assert any("changed after sealing" in r for r in result.reasons)


def test_expired_at_validation_time_is_not_trusted(pki: DevPKI, sealed_pdf: bytes) -> None:
    later = pki.root_cert().not_valid_after_utc + timedelta(days=1)
    result = verify_pdf(sealed_pdf, [pki.root_cert()], validation_time=later)
    assert result.intact and not result.trusted and not result.valid


def test_unsigned_pdf(pki: DevPKI, license_pdf: bytes) -> None:
    result = verify_pdf(license_pdf, [pki.root_cert()])
    assert not result.valid
    assert result.signature_count == 0
    assert result.reasons == ("the PDF carries no signature",)


def test_not_a_pdf(pki: DevPKI) -> None:
    result = verify_pdf(b"hello", [pki.root_cert()])
    assert not result.valid
    assert "cannot be read" in result.reasons[0]


def test_no_trust_roots_is_refused(sealed_pdf: bytes) -> None:
    with pytest.raises(VerificationError, match="system trust store"):
        verify_pdf(sealed_pdf, [])


def test_unreadable_trust_root_is_refused(sealed_pdf: bytes, tmp_path: Path) -> None:
    with pytest.raises(VerificationError, match="cannot load"):
        verify_pdf(sealed_pdf, [tmp_path / "absent.pem"])
    with pytest.raises(VerificationError):
        verify_pdf(sealed_pdf, [write(tmp_path, "junk.pem", b"junk")])
