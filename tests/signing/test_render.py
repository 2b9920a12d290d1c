"""License rendering: determinism, page geometry, text, and the blank seal area."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest
from pyhanko.pdf_utils.reader import PdfFileReader

from signing.errors import UnsealableDocument
from signing.render import PAGE_HEIGHT, SEAL_BOX, render_license_pdf
from tests.conftest import need_binary
from tests.signing.conftest import sample_view, write


@pytest.fixture(autouse=True)
def _tools() -> None:
    need_binary("pdftotext", "poppler-utils")
    need_binary("pdffonts", "poppler-utils")
    need_binary("zbarimg", "zbar-tools")


def test_same_input_gives_identical_bytes() -> None:
    assert render_license_pdf(sample_view()) == render_license_pdf(sample_view())


def test_different_input_gives_different_bytes() -> None:
    assert render_license_pdf(sample_view()) != render_license_pdf(
        sample_view(holder_name="另一家示例有限公司")
    )


def test_one_a4_page(license_pdf: bytes) -> None:
    reader = PdfFileReader(io.BytesIO(license_pdf))
    pages = reader.root["/Pages"]
    assert pages["/Count"] == 1
    box = [float(v) for v in pages["/Kids"][0]["/MediaBox"]]
    assert box[2] == pytest.approx(595.27, abs=0.1)
    assert box[3] == pytest.approx(841.89, abs=0.1)


def _text(pdf: Path, *crop: str) -> str:
    out = subprocess.run(
        ["pdftotext", "-enc", "UTF-8", *crop, str(pdf), "-"],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout


def test_chinese_text_is_extractable(license_pdf: bytes, tmp_path: Path) -> None:
    text = _text(write(tmp_path, "license.pdf", license_pdf))
    for expected in ("济南市历下区泉城路示例科技有限公司", "法定代表人", "张三", "发证机关"):
        assert expected in text
    assert "营业执照" in text.replace(" ", "")


def test_seal_box_is_left_blank(license_pdf: bytes, tmp_path: Path) -> None:
    x1, y1, x2, y2 = SEAL_BOX
    # pdftotext crops in pixels at 72 dpi from the top-left corner.
    crop = ["-r", "72", "-x", str(x1), "-y", str(int(PAGE_HEIGHT - y2))]
    crop += ["-W", str(x2 - x1), "-H", str(y2 - y1)]
    path = write(tmp_path, "license.pdf", license_pdf)
    assert _text(path, *crop).strip() == ""
    # The crop itself works: just left of the box is the issuer line.
    left = ["-r", "72", "-x", "60", "-y", str(int(PAGE_HEIGHT - y2))]
    left += ["-W", str(x1 - 60), "-H", str(y2 - y1)]
    assert "发证机关" in _text(path, *left)


def test_markup_characters_are_shown_literally(tmp_path: Path) -> None:
    pdf = render_license_pdf(sample_view(holder_name="A&B <示例> 公司"))
    assert "A&B <示例> 公司" in _text(write(tmp_path, "x.pdf", pdf))


def test_too_many_rows_is_refused() -> None:
    rows = tuple((f"字段{i}", "值" * 30) for i in range(40))
    with pytest.raises(UnsealableDocument, match="rows"):
        render_license_pdf(sample_view(surface=rows))


def test_chinese_font_is_embedded(tmp_path: Path) -> None:
    # pdffonts lists every font of the page; the license's must be embedded
    # (a subset), so it reads the same on a machine without CJK fonts.
    from signing.render import FONT_PATH

    assert FONT_PATH is not None, "scripts/system-deps.sh installs fonts-arphic-gbsn00lp"
    out = subprocess.run(
        ["pdffonts", str(write(tmp_path, "x.pdf", render_license_pdf(sample_view())))],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rows = [line.split() for line in out.splitlines()[2:] if line.strip()]
    assert rows, out
    assert all(r[-5] == "yes" for r in rows), out  # columns: … emb sub uni object ID
    assert len(rows) == 1 and "+" in rows[0][0], out  # one subset font: no Helvetica left over


def test_qr_code_decodes_to_the_verification_url(tmp_path: Path) -> None:
    url = "https://ehub.example.gov.cn/verify/1.2.156.3005.2.11100000000013338W001.X.001.K"
    pdf = write(tmp_path, "x.pdf", render_license_pdf(sample_view(verify_url=url)))
    subprocess.run(["pdftoppm", "-r", "150", "-png", "-singlefile", str(pdf), str(tmp_path / "p")],
                   check=True)  # fmt: skip
    out = subprocess.run(
        ["zbarimg", "--quiet", "--raw", str(tmp_path / "p.png")],
        capture_output=True,
        text=True,
    )
    assert out.stdout.strip().splitlines() == [url], out.stderr


def test_no_qr_code_without_a_url(tmp_path: Path) -> None:
    pdf = write(tmp_path, "x.pdf", render_license_pdf(sample_view()))
    subprocess.run(["pdftoppm", "-r", "150", "-png", "-singlefile", str(pdf), str(tmp_path / "p")],
                   check=True)  # fmt: skip
    out = subprocess.run(["zbarimg", "--quiet", "--raw", str(tmp_path / "p.png")],
                         capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 4 and out.stdout == ""  # zbarimg: 4 = no symbol found
