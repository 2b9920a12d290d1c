"""License OFDs read back by an independent OFD reader: easyofd (PyPI) → PDF → text.

Every license template is rendered by :func:`signing.ofd_writer.write_license_ofd`,
converted to PDF by easyofd (its own OFD parser, reportlab drawing), and the
PDF's text extracted by poppler's ``pdftotext`` must contain the title and
every row of the page — label and value, Chinese included — the issuer
line, the issue date and the notes. A sealed OFD must also show the seal
picture easyofd takes from ``Seal.esl`` at the ``StampAnnot`` boundary.

Two limitations of easyofd 2026.04 are worked around here, in the test only:

- it draws every text object with a reportlab font named ``宋体`` (hard-coded
  in ``DrawPDF.draw_chars``), never with the document's embedded font, and
  registers ``宋体`` at import from a Windows ``simsun.ttc`` (absent here, so it
  falls back to Helvetica and drops every CJK character). The test registers
  the project's own CJK TrueType font (:data:`signing.render.FONT_PATH`, AR
  PL SungtiL GB) under that name. The embedded subset itself is checked
  glyph by glyph in ``test_ofd.py``.
- it writes each embedded font to a file in the current directory while
  converting, prepends the current directory to ``sys.path`` at import, and
  logs a warning per missing Windows font at import: the conversion runs in
  a temporary directory, ``sys.path`` is restored and the ``easyofd`` loguru
  logger is disabled.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ehub.seal_image import DIAMETER_MM, render_seal_png
from ehub.templates import license_view, templates
from signing import render, ses, sm2_cert
from signing.ofd_seal import BENCH_DOCUMENT, default_boundary, seal_ofd
from signing.ofd_writer import PAGE_H, PAGE_W, write_license_ofd
from tests.conftest import need_binary, require_or_skip

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
SIGNED_AT = dt.datetime(2024, 5, 20, 1, 30, tzinfo=dt.UTC)
SEAL_LABEL = "山东省市场监督管理局电子证照专用章"

#: Plausible surface values by field code; a field of a new template without
#: one here gets "<label>（示例）", so every template is still covered.
SURFACE_VALUES = {
    "KZ_QYLX": "有限责任公司（自然人投资或控股）",
    "KZ_FDDBR": "张三",
    "KZ_ZCZB": "壹佰万元整",
    "KZ_ZS": "山东省济南市历下区泉城路188号示例大厦12层1201室",
    "KZ_JYFW": "技术服务、技术开发、技术咨询；软件开发；数据处理服务。",
    "KZ_XMMC": "泉城路示例综合楼工程",
    "KZ_JSDZ": "山东省济南市历下区泉城路200号",
    "KZ_JZMJ": "12850.5",
    "KZ_HTJG": "3260",
    "KZ_ZYLB": "临床",
    "KZ_ZYFW": "内科专业",
    "KZ_ZYDD": "山东省立医院",
    "KZ_DZ": "山东省青岛市市南区香港中路9号",
}


def license_document(type_code: str) -> dict[str, Any]:
    tpl = templates()[type_code]
    surface = {code: SURFACE_VALUES.get(code, f"{label}（示例）") for code, label in tpl.fields}
    return {
        **BENCH_DOCUMENT,
        "ZZLXDM": type_code,
        "ZZMC": tpl.title,
        "ZZBH": f"SD{type_code[-3:]}2024000123",
        "CZZT": "济南市历下区泉城路示例科技有限公司",
        "KZ": surface,
    }


@contextlib.contextmanager
def _quiet_import() -> Iterator[None]:
    saved = list(sys.path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # PyMuPDF's deprecated `fitz` name
        try:
            yield
        finally:
            sys.path[:] = saved


@pytest.fixture(scope="module")
def ofd_to_pdf(tmp_path_factory: pytest.TempPathFactory) -> Callable[[bytes], bytes]:
    """easyofd's OFD → PDF conversion, run in a scratch directory."""
    if render.FONT_PATH is None:
        require_or_skip(f"no CJK TrueType font (set {render.FONT_ENV})")
    from loguru import logger
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    logger.disable("easyofd")
    with _quiet_import():
        from easyofd import OFD
    # easyofd draws all text in "宋体" (see the module docstring).
    pdfmetrics.registerFont(TTFont("宋体", str(render.FONT_PATH)))
    scratch = tmp_path_factory.mktemp("easyofd")

    def convert(ofd: bytes) -> bytes:
        here = Path.cwd()
        os.chdir(scratch)
        try:
            reader = OFD()
            reader.read(ofd, fmt="binary")
            return bytes(reader.to_pdf())
        finally:
            os.chdir(here)

    return convert


def pdf_text(pdf: bytes, tmp_path: Path) -> str:
    """The PDF's text in content order (poppler ``pdftotext -raw``), whitespace removed."""
    tool = need_binary("pdftotext", "poppler-utils")
    path = tmp_path / "converted.pdf"
    path.write_bytes(pdf)
    out = subprocess.run(
        [tool, "-raw", "-enc", "UTF-8", str(path), "-"], capture_output=True, check=True
    )
    return "".join(out.stdout.decode("utf-8").split())


def expected_lines(doc: dict[str, Any]) -> list[str]:
    """What the page must show, in the order it is drawn (whitespace removed)."""
    view = license_view(doc, seal_label=SEAL_LABEL, verify_url="https://hub.example/verify")
    rows = [label + value for label, value in render._rows(view)]
    return [
        view.title,
        *rows,
        f"发证机关：{view.issuer_name}",
        f"发证日期：{view.issue_date}",
        SEAL_LABEL,
        "本证照为电子证照，可凭证照标识核验真伪。",
        "扫码核验",
    ]


def assert_shows(text: str, lines: list[str]) -> None:
    missing = ["".join(line.split()) for line in lines if "".join(line.split()) not in text]
    assert not missing, f"not in the converted PDF's text: {missing}\n--- text: {text}"


@pytest.mark.parametrize("type_code", sorted(templates()))
def test_every_template_reads_back_with_its_field_values(
    type_code: str, ofd_to_pdf: Callable[[bytes], bytes], tmp_path: Path
) -> None:
    doc = license_document(type_code)
    ofd = write_license_ofd(doc, verify_url="https://hub.example/verify", seal_label=SEAL_LABEL)
    text = pdf_text(ofd_to_pdf(ofd), tmp_path)
    lines = expected_lines(doc)
    assert_shows(text, lines)
    # The surface values are this license's own, in the template's order.
    values = ["".join(v.split()) for v in doc["KZ"].values()]
    positions = [text.index(v) for v in values]
    assert positions == sorted(positions), "surface fields out of the template's order"
    assert text.index(doc["CZZT"]) < positions[0]


def test_a_different_license_reads_back_differently(
    ofd_to_pdf: Callable[[bytes], bytes], tmp_path: Path
) -> None:
    """The text comes from the document, not from the reader or the template."""
    doc = {**license_document("11100000000013338W001"), "CZZT": "青岛崂山另一示例有限公司"}
    text = pdf_text(ofd_to_pdf(write_license_ofd(doc)), tmp_path)
    assert "青岛崂山另一示例有限公司" in text
    assert "济南市历下区泉城路示例科技有限公司" not in text


def test_sealed_ofd_shows_the_seal_picture_at_the_stamp(
    ofd_to_pdf: Callable[[bytes], bytes], tmp_path: Path
) -> None:
    import pymupdf

    pki = sm2_cert.make_dev_sm2_pki(T0)
    picture = ses.SealPicture(
        "PNG", render_seal_png("山东省市场监督管理局", "电子证照专用章"), DIAMETER_MM, DIAMETER_MM
    )
    seal = ses.make_seal(
        ses.SealSpec(
            es_id="37000000000001",
            name=SEAL_LABEL,
            signer_certs=[pki.signer_cert],
            picture=picture,
            create_date=T0,
            valid_start=T0,
            valid_end=T0 + dt.timedelta(days=365),
        ),
        maker_key=pki.maker_key,
        maker_cert=pki.maker_cert,
    )
    doc = license_document("11100000000013338W001")
    ofd = write_license_ofd(doc, verify_url="https://hub.example/verify", seal_label=SEAL_LABEL)
    sealed = seal_ofd(ofd, seal, pki.signer_key, pki.signer_cert, signing_time=SIGNED_AT)

    plain_pdf, sealed_pdf = ofd_to_pdf(ofd), ofd_to_pdf(sealed)
    assert pdf_text(sealed_pdf, tmp_path) == pdf_text(plain_pdf, tmp_path)
    with pymupdf.open(stream=plain_pdf, filetype="pdf") as plain:
        assert plain[0].get_image_info() == []
    with pymupdf.open(stream=sealed_pdf, filetype="pdf") as converted:
        page = converted[0]
        images = page.get_image_info()
        assert len(images) == 1, images
        # easyofd draws at its own scale (200 units per inch, not 72): compare in
        # fractions of the page, whose proportions must be the OFD's A4 PhysicalBox.
        width, height = page.rect.width, page.rect.height
        assert width / height == pytest.approx(PAGE_W / PAGE_H, rel=1e-3)
        x0, y0, x1, y1 = images[0]["bbox"]  # origin top-left
        got = (x0 / width, y0 / height, x1 / width, y1 / height)
        x, y, w, h = default_boundary(seal)  # mm, origin top-left
        expected = (x / PAGE_W, y / PAGE_H, (x + w) / PAGE_W, (y + h) / PAGE_H)
        assert got == pytest.approx(expected, abs=0.002), (got, expected)
