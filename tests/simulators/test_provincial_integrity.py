"""The provincial simulator's signature integrity check: the direct check of a document
signed once over the whole file gives the same verdict as pyHanko's reader, on the
hub's own sealed PDFs, pyHanko's, and every tampering tried; other shapes go to the
reader."""

from __future__ import annotations

import hashlib
import re

import pytest
from asn1crypto.cms import ContentInfo

from simulators import pdf_integrity as checks
from tests.simulators.payloads import make_signed_pdf


@pytest.fixture(scope="module")
def hub_pdf(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A license sealed by the hub's bulk fast path (signing.fastpades), with its picture."""
    from ehub.seal_image import render_seal_png
    from signing.fastpades import FastSealer
    from signing.pki import ensure_dev_pki
    from tests.signing.conftest import SIGNING_TIME, sample_view

    tmp = tmp_path_factory.mktemp("hub-seal")
    pki = ensure_dev_pki(tmp / "pki", passphrase="integrity-test-passphrase")
    png = tmp / "seal.png"
    png.write_bytes(render_seal_png("烟台市芝罘区市场监督管理局", "电子证照专用章"))
    sealer = FastSealer(pki.seal_p12_path, pki.passphrase, stamp_image=png)
    return sealer.seal_view(sample_view(), signing_time=SIGNING_TIME, reason="seal",
                            location="山东")  # fmt: skip


def _verdicts(content: bytes) -> tuple[bool, bool]:
    """(accepted by the simulator's check, accepted by pyHanko's reader)."""
    return checks.integrity_problem(content) is None, checks.reader_problem(content) is None


def _mutations(pdf: bytes) -> dict[str, bytes]:
    m = re.search(rb"/ByteRange\s*\[\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", pdf)
    assert m
    first, hole_end = int(m.group(2)), int(m.group(3))

    def flip(at: int) -> bytes:
        new = b"1" if pdf[at : at + 1] != b"1" else b"2"
        return pdf[:at] + new + pdf[at + 1 :]

    der = bytes.fromhex(pdf[first + 1 : hole_end - 1].decode())
    assert der[:2] == b"\x30\x82"  # SEQUENCE, two length bytes
    der_end = first + 1 + 2 * (4 + int.from_bytes(der[2:4], "big"))  # after the DER's hex
    out = {f"byte {at}": flip(at) for at in (20, first // 2, first - 3, hole_end + 5, len(pdf) - 8)}
    signed = hashlib.sha256(pdf[:first] + pdf[hole_end:]).digest()
    cms = ContentInfo.load(der)
    certs = [hashlib.sha256(c.chosen.dump()).digest() for c in cms["content"]["certificates"]]
    (cert_hash,) = [h for h in certs if der.find(h) > 0]  # the signer's, named by ESS v2
    for name, value in (("the message digest attribute", signed),
                        ("the signing-certificate hash", cert_hash)):  # fmt: skip
        out[name] = flip(first + 1 + 2 * (der.find(value) + 3))
    out.update({
        "a hex digit of the signature": flip(first + 40),
        "a hex digit of the signature value": flip(der_end - 6),
        "the padding": flip(hole_end - 4),
        "bytes appended": pdf + b"\n% more\n",
        "truncated": pdf[:-10],
        "the range shortened": pdf.replace(m.group(0), m.group(0)[:-1] + b" ", 1),
    })  # fmt: skip
    return out


@pytest.mark.parametrize("made_by", ["hub", "pyhanko"])
def test_the_direct_check_agrees_with_pyhankos_reader(
    made_by: str, hub_pdf: bytes, signed_pdf: bytes
) -> None:
    pdf = hub_pdf if made_by == "hub" else signed_pdf
    assert checks.whole_file_problem(pdf) is None  # the direct path took it
    assert _verdicts(pdf) == (True, True)
    for name, bad in _mutations(pdf).items():
        fast, reader = _verdicts(bad)
        assert fast == reader or not fast, name  # never accepts what the reader refuses
        if name not in ("the padding", "bytes appended"):
            assert not fast, name


def test_two_signatures_go_through_the_reader() -> None:
    pdf = make_signed_pdf(twice=True)
    with pytest.raises(checks.OtherShape):
        checks.whole_file_problem(pdf)
    assert _verdicts(pdf) == (True, True)
    at = pdf.index(b"ReportLab")
    tampered = pdf[:at] + b"X" + pdf[at + 1 :]
    assert _verdicts(tampered) == (False, False)
