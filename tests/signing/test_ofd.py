"""OFD license documents with a GB/T 38540 SM2 seal: writing, sealing, verifying, tampering.

Independent reading: no maintained OFD reader is installed (no ``easyofd`` /
``ofdrw`` binding in the environment), so the package is checked with other
independent tools: Python's ``zipfile`` and ``unzip -t`` for the container,
lxml against the GB/T 33190 structure for every XML part, FreeType (Pillow)
for the embedded font subset (it must draw exactly what the full font draws),
and the CheckValues / dataHash are recomputed here without the verifier.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import io
import os
import shutil
import stat
import subprocess
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from lxml import etree
from PIL import Image, ImageChops, ImageDraw, ImageFont

from ehub.cli_verify import verify
from signing import ofd_font, render, ses, sm2, sm2_cert
from signing.ofd_package import NS, q, read_package, write_package
from signing.ofd_seal import BENCH_DOCUMENT, ofd_seal_per_s, seal_ofd
from signing.ofd_verify import OfdReason, verify_ofd
from signing.ofd_writer import write_license_ofd
from signing.pki_sm2 import ensure_dev_sm2_seal_maker
from signing.ses_verify import SesReason

UTC = dt.UTC
T0 = dt.datetime(2024, 1, 1, tzinfo=UTC)
SIGNED_AT = dt.datetime(2024, 5, 20, 1, 30, tzinfo=UTC)
CONTENT = "Doc_0/Pages/Page_0/Content.xml"
SIGNATURE = "Doc_0/Signs/Sign_0/Signature.xml"
SIGNED_VALUE = "Doc_0/Signs/Sign_0/SignedValue.dat"


@pytest.fixture(scope="module")
def sm2_pki() -> sm2_cert.DevSm2Pki:
    return sm2_cert.make_dev_sm2_pki(T0)


@pytest.fixture(scope="module")
def stranger() -> sm2_cert.DevSm2Pki:
    return sm2_cert.make_dev_sm2_pki(T0, maker_name="untrusted maker", signer_name="stranger")


def make_seal(pki: sm2_cert.DevSm2Pki, *, maker: sm2_cert.DevSm2Pki | None = None, **kw: object):
    spec = ses.SealSpec(
        es_id="37010200000001",
        name="济南市历下区市场监督管理局电子证照专用章",
        signer_certs=[pki.signer_cert],
        picture=ses.SealPicture("PNG", b"\x89PNG\r\n\x1a\n", 40, 40),
        create_date=T0,
        valid_start=T0,
        valid_end=T0 + dt.timedelta(days=365),
    )
    maker = maker or pki
    return ses.make_seal(
        dataclasses.replace(spec, **kw),  # type: ignore[arg-type]
        maker_key=maker.maker_key,
        maker_cert=maker.maker_cert,
    )


@pytest.fixture(scope="module")
def ofd() -> bytes:
    return write_license_ofd(
        BENCH_DOCUMENT, verify_url="https://hub.example/verify", seal_label="电子证照专用章"
    )


@pytest.fixture(scope="module")
def sealed(ofd: bytes, sm2_pki: sm2_cert.DevSm2Pki) -> bytes:
    seal = make_seal(sm2_pki)
    return seal_ofd(ofd, seal, sm2_pki.signer_key, sm2_pki.signer_cert, signing_time=SIGNED_AT)


def replace_entry(package: bytes, name: str, body: bytes) -> bytes:
    entries = read_package(package)
    entries[name] = body
    return write_package(entries)


# --- writer ----------------------------------------------------------------------------


def test_writer_is_deterministic(ofd: bytes) -> None:
    again = write_license_ofd(
        BENCH_DOCUMENT, verify_url="https://hub.example/verify", seal_label="电子证照专用章"
    )
    assert again == ofd
    other = write_license_ofd({**BENCH_DOCUMENT, "ZZBH": "SD999"})
    assert other != ofd


def test_package_opens_with_independent_zip_readers(ofd: bytes, tmp_path: Path) -> None:
    with zipfile.ZipFile(io.BytesIO(ofd)) as archive:
        assert archive.testzip() is None
        names = archive.namelist()
        assert all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in archive.infolist())
    assert names[0] == "OFD.xml"
    assert {"Doc_0/Document.xml", "Doc_0/PublicRes.xml", CONTENT} <= set(names)
    unzip = shutil.which("unzip")
    if unzip:
        path = tmp_path / "license.ofd"
        path.write_bytes(ofd)
        result = subprocess.run([unzip, "-t", str(path)], capture_output=True, check=False)
        assert result.returncode == 0, result.stdout.decode()


def test_xml_parts_follow_gbt33190_structure(ofd: bytes) -> None:
    entries = read_package(ofd)
    parts = {n: etree.fromstring(b) for n, b in entries.items() if n.endswith(".xml")}
    for name, root in parts.items():
        assert etree.QName(root).namespace == NS, name
        assert root.prefix == "ofd", name
    root = parts["OFD.xml"]
    assert root.get("Version") == "1.0" and root.get("DocType") == "OFD"
    info = root.find(f"{q('DocBody')}/{q('DocInfo')}")
    assert info is not None
    assert len(info.findtext(q("DocID")) or "") == 32
    assert info.findtext(q("Title")) == "营业执照 SD202400000001"
    assert info.findtext(q("CreationDate")) == "2024-05-20"
    custom = {c.get("Name"): c.text for c in info.iter(q("CustomData"))}
    assert custom["ZZBS"] == BENCH_DOCUMENT["ZZBS"]
    assert custom["ZZLXDM"] == "11100000000013338W001"
    assert custom["ZZBFJG"] == "济南市历下区市场监督管理局"
    assert custom["CZZTDM"] == "91370102MA3C5ABC1X" and custom["BBH"] == "1"
    assert custom["KZ_FDDBR"] == "张三"
    assert root.findtext(f"{q('DocBody')}/{q('DocRoot')}") == "Doc_0/Document.xml"

    doc = parts["Doc_0/Document.xml"]
    common = doc.find(q("CommonData"))
    assert common is not None
    assert common.findtext(f"{q('PageArea')}/{q('PhysicalBox')}") == "0 0 210 297"
    assert common.findtext(q("PublicRes")) == "PublicRes.xml"
    page = doc.find(f"{q('Pages')}/{q('Page')}")
    assert page is not None and page.get("BaseLoc") == "Pages/Page_0/Content.xml"
    ids = [int(e.get("ID")) for p in parts.values() for e in p.iter() if e.get("ID")]
    assert len(ids) == len(set(ids)) and max(ids) <= int(common.findtext(q("MaxUnitID")) or 0)

    font = parts["Doc_0/PublicRes.xml"].find(f"{q('Fonts')}/{q('Font')}")
    assert font is not None and font.findtext(q("FontFile")) == "font_1.ttf"
    assert "Doc_0/Res/font_1.ttf" in entries

    texts = parts[CONTENT].findall(f".//{q('TextObject')}")
    shown = "".join(t.findtext(q("TextCode")) or "" for t in texts)
    for value in ("济南市历下区泉城路示例科技有限公司", "91370102MA3C5ABC1X", "统一社会信用代码"):
        assert value in shown
    for text in texts:
        assert text.get("Font") == font.get("ID")
        x, y, w, h = (float(v) for v in (text.get("Boundary") or "").split())
        assert x >= 0 and y >= 0 and x + w <= 210 and y + h <= 297
        code = text.find(q("TextCode"))
        assert code is not None and len((code.get("DeltaX") or "").split()) == len(code.text) - 1


@pytest.mark.skipif(render.FONT_PATH is None, reason="no CJK TrueType font on this machine")
def test_embedded_font_subset_draws_like_the_full_font(ofd: bytes) -> None:
    subset = read_package(ofd)["Doc_0/Res/font_1.ttf"]
    assert len(subset) < 500_000  # a subset, not the 5 MB font

    def draw(font: ImageFont.FreeTypeFont) -> Image.Image:
        image = Image.new("L", (700, 60), 255)
        ImageDraw.Draw(image).text((0, 0), "营业执照济南张三（）：123", font=font, fill=0)
        return image

    drawn = draw(ImageFont.truetype(io.BytesIO(subset), 40))
    assert (
        ImageChops.difference(drawn, draw(ImageFont.truetype(render.FONT_PATH, 40))).getbbox()
        is None
    )
    assert drawn.getextrema()[0] == 0  # something was drawn


def test_seal_image_is_placed_in_the_seal_area() -> None:
    png = b"\x89PNG\r\n\x1a\nimage"
    entries = read_package(write_license_ofd(BENCH_DOCUMENT, seal_image=png))
    assert entries["Doc_0/Res/seal_image.png"] == png
    media = etree.fromstring(entries["Doc_0/DocumentRes.xml"]).find(f".//{q('MultiMedia')}")
    image = etree.fromstring(entries[CONTENT]).find(f".//{q('ImageObject')}")
    assert media is not None and image is not None
    assert image.get("ResourceID") == media.get("ID")


# --- seal and verify -------------------------------------------------------------------


def test_sealed_document_verifies(sealed: bytes, sm2_pki: sm2_cert.DevSm2Pki) -> None:
    result = verify_ofd(sealed, [sm2_pki.maker_cert])
    assert result.valid, result.reasons
    assert result.license_identifier == BENCH_DOCUMENT["ZZBS"]
    (seal,) = result.seals
    assert seal.seal_name == "济南市历下区市场监督管理局电子证照专用章"
    assert seal.signing_time == SIGNED_AT


def test_signature_files_and_check_values_recomputed(sealed: bytes) -> None:
    entries = read_package(sealed)
    listing = etree.fromstring(entries["Doc_0/Signs/Signatures.xml"])
    (item,) = listing.findall(q("Signature"))
    assert item.get("Type") == "Seal" and item.get("BaseLoc") == f"/{SIGNATURE}"
    ofd_root = etree.fromstring(entries["OFD.xml"])
    assert ofd_root.findtext(f"{q('DocBody')}/{q('Signatures')}") == "Doc_0/Signs/Signatures.xml"
    sig = etree.fromstring(entries[SIGNATURE])
    info = sig.find(q("SignedInfo"))
    assert info is not None
    assert info.findtext(q("SignatureMethod")) == "1.2.156.10197.1.501"
    refs = info.find(q("References"))
    assert refs is not None and refs.get("CheckMethod") == "1.2.156.10197.1.401"
    checked = {}
    for ref in refs.findall(q("Reference")):
        name = (ref.get("FileRef") or "").lstrip("/")
        checked[name] = base64.b64decode(ref.findtext(q("CheckValue")) or "")
    assert {CONTENT, "OFD.xml", "Doc_0/Res/font_1.ttf", "Doc_0/Signs/Sign_0/Seal.esl"} <= set(
        checked
    )
    assert all(sm2.sm3(entries[name]) == digest for name, digest in checked.items())
    annot = info.find(q("StampAnnot"))
    assert annot is not None and annot.get("PageRef") == "2" and annot.get("Boundary")
    decoded = ses.decode_signature(entries[SIGNED_VALUE])
    assert decoded.data_hash == sm2.sm3(entries[SIGNATURE])
    assert decoded.property_info == f"/{SIGNATURE}"
    assert decoded.seal_der == entries["Doc_0/Signs/Sign_0/Seal.esl"]


def test_second_seal_keeps_the_first_valid(sealed: bytes, sm2_pki: sm2_cert.DevSm2Pki) -> None:
    seal = make_seal(sm2_pki, es_id="37010200000002")
    twice = seal_ofd(sealed, seal, sm2_pki.signer_key, sm2_pki.signer_cert, signing_time=SIGNED_AT)
    result = verify_ofd(twice, [sm2_pki.maker_cert])
    assert result.valid, result.reasons
    assert len(result.seals) == 2


def _reseal(ofd: bytes, pki: sm2_cert.DevSm2Pki, seal: bytes) -> bytes:
    return seal_ofd(ofd, seal, pki.signer_key, pki.signer_cert, signing_time=SIGNED_AT)


def test_tampered_page_content(sealed: bytes, sm2_pki: sm2_cert.DevSm2Pki) -> None:
    content = read_package(sealed)[CONTENT].replace("张三".encode(), "李四".encode())
    result = verify_ofd(replace_entry(sealed, CONTENT, content), [sm2_pki.maker_cert])
    assert not result.valid and OfdReason.CHECK_VALUE_MISMATCH in result.reason_codes


def test_tampered_signature_xml(sealed: bytes, sm2_pki: sm2_cert.DevSm2Pki) -> None:
    body = read_package(sealed)[SIGNATURE].replace(b'PageRef="2"', b'PageRef="2" ')
    result = verify_ofd(replace_entry(sealed, SIGNATURE, body), [sm2_pki.maker_cert])
    assert not result.valid and SesReason.DATA_HASH_MISMATCH in result.reason_codes


def test_seal_from_untrusted_maker(ofd: bytes, sm2_pki, stranger) -> None:
    package = _reseal(ofd, sm2_pki, make_seal(sm2_pki, maker=stranger))
    result = verify_ofd(package, [sm2_pki.maker_cert])
    assert SesReason.SEAL_MAKER_UNTRUSTED in result.reason_codes and not result.valid


def test_expired_seal(ofd: bytes, sm2_pki) -> None:
    seal = make_seal(sm2_pki, valid_end=T0 + dt.timedelta(days=30))
    result = verify_ofd(_reseal(ofd, sm2_pki, seal), [sm2_pki.maker_cert])
    assert result.reason_codes == {SesReason.SEAL_EXPIRED}


def test_signer_absent_from_the_seal_list(ofd: bytes, sm2_pki, stranger) -> None:
    seal = make_seal(sm2_pki, signer_certs=[stranger.signer_cert])
    result = verify_ofd(_reseal(ofd, sm2_pki, seal), [sm2_pki.maker_cert])
    assert result.reason_codes == {SesReason.SIGNER_NOT_IN_SEAL}


def test_truncated_signed_value(sealed: bytes, sm2_pki) -> None:
    value = read_package(sealed)[SIGNED_VALUE]
    result = verify_ofd(replace_entry(sealed, SIGNED_VALUE, value[:-40]), [sm2_pki.maker_cert])
    assert not result.valid and SesReason.MALFORMED in result.reason_codes


def test_file_added_after_sealing(sealed: bytes, sm2_pki) -> None:
    package = replace_entry(sealed, "Doc_0/Pages/Page_1/Content.xml", b"<x/>")
    result = verify_ofd(package, [sm2_pki.maker_cert])
    assert OfdReason.UNPROTECTED_PART in result.reason_codes


def test_seal_file_swapped(sealed: bytes, sm2_pki) -> None:
    other = make_seal(sm2_pki, es_id="OTHER")
    package = replace_entry(sealed, "Doc_0/Signs/Sign_0/Seal.esl", other)
    codes = verify_ofd(package, [sm2_pki.maker_cert]).reason_codes
    assert {OfdReason.SEAL_FILE_MISMATCH, OfdReason.CHECK_VALUE_MISMATCH} <= codes


@pytest.mark.parametrize("name", ["../evil.xml", "/etc/evil", "Doc_0/../../x", "a\\b"])
def test_unsafe_entry_names_are_refused(sealed: bytes, sm2_pki, name: str) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for entry, body in read_package(sealed).items():
            archive.writestr(entry, body)
        archive.writestr(zipfile.ZipInfo(name), b"x")
    result = verify_ofd(buffer.getvalue(), [sm2_pki.maker_cert])
    assert not result.readable and result.reason_codes == {OfdReason.UNSAFE_PACKAGE}


def test_unsealed_and_garbage(ofd: bytes, sm2_pki) -> None:
    assert verify_ofd(ofd, [sm2_pki.maker_cert]).reason_codes == {OfdReason.NO_SEAL}
    assert verify_ofd(b"PK\x03\x04junk", [sm2_pki.maker_cert]).reason_codes == {OfdReason.NOT_OFD}


# --- dev PKI, CLI, figure --------------------------------------------------------------


def test_dev_sm2_seal_maker_is_idempotent_and_private(tmp_path: Path) -> None:
    first = ensure_dev_sm2_seal_maker(tmp_path / "pki")
    again = ensure_dev_sm2_seal_maker(tmp_path / "pki")
    assert again.maker_cert == first.maker_cert and again.seal == first.seal
    for key in ("maker.key.pem", "signer.key.pem"):
        assert stat.S_IMODE(os.stat(first.directory / key).st_mode) == 0o600
    decoded = ses.decode_seal(first.seal)
    assert decoded.certs == (first.signer_cert,) and decoded.maker_cert == first.maker_cert


def test_ehub_verify_ofd(ofd: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EHUB_HOME", str(tmp_path))
    dev = ensure_dev_sm2_seal_maker(tmp_path / "pki")
    good = tmp_path / "license.ofd"
    good.write_bytes(seal_ofd(ofd, dev.seal, dev.signer_key, dev.signer_cert))
    bad = tmp_path / "tampered.ofd"
    content = read_package(good.read_bytes())[CONTENT].replace("张三".encode(), "李四".encode())
    bad.write_bytes(replace_entry(good.read_bytes(), CONTENT, content))
    runner = CliRunner()

    ok = runner.invoke(verify, [str(good), "--no-register"])
    assert ok.exit_code == 0, ok.output
    assert "VALID" in ok.output and "OFD" in ok.output
    tampered = runner.invoke(verify, [str(bad), "--no-register", "--json"])
    assert tampered.exit_code == 1, tampered.output
    assert "check_value_mismatch" in tampered.output

    maker = tmp_path / "maker.der"
    maker.write_bytes(sm2_cert.make_dev_sm2_pki(T0).maker_cert)  # someone else's maker
    other = runner.invoke(verify, [str(good), "--no-register", "--ofd-trust", str(maker)])
    assert other.exit_code == 1 and "seal_maker_untrusted" in other.output


def test_ofd_seal_figure() -> None:
    assert ofd_seal_per_s(2) > 0
    assert ofd_font.font_subset("证照") != ofd_font.font_subset("证照1")
