"""Render an e-license (电子证照) as a one-page A4 PDF, ready to be sealed.

:func:`render_license_pdf` is pure: the same :class:`LicenseView` always gives
byte-identical PDF bytes (reportlab invariant mode: fixed creation date, and a
document ID derived from the content). It reads no clock and no files outside
reportlab's own resources. The area :data:`SEAL_BOX` is left blank for the
visible seal that :mod:`signing.pades` places there.

This module only lays out display strings; turning a canonical License record
into a :class:`LicenseView` (code-list names, date formats) is the caller's job.
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass
from xml.sax.saxutils import escape

from reportlab.graphics.barcode import qrencoder
from reportlab.lib import colors
from reportlab.lib.enums import TA_LEFT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen import canvas
from reportlab.platypus import Paragraph, Table, TableStyle

from signing.errors import UnsealableDocument

log = logging.getLogger(__name__)

FONT_ENV = "EHUB_CJK_FONT"
"""Path of a TrueType CJK font to embed (overrides the search of :data:`FONT_CANDIDATES`)."""
FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/arphic-gbsn00lp/gbsn00lp.ttf",  # Debian fonts-arphic-gbsn00lp (宋体)
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",  # Debian fonts-wqy-microhei
)
#: Characters the embedded font must have (fonts such as Droid Sans Fallback carry CJK only).
_REQUIRED_GLYPHS = "0123456789ABCXYZabcxyz&<>()-.:/营业执照证照标识年月日（）：·"
_CID_FONT = "STSong-Light"


def _register_font() -> tuple[str, str | None]:
    """The font of every string on the page: a TrueType CJK font, embedded as a
    subset so the license reads the same everywhere, or else Adobe's standard
    STSong-Light CID font (nothing embedded; the viewer supplies the glyphs)."""
    given = os.environ.get(FONT_ENV)
    for path in [given] if given else list(FONT_CANDIDATES):
        if path and os.path.isfile(path):
            try:
                font = TTFont("EhubCJK", path, subfontIndex=0)
                missing = [c for c in _REQUIRED_GLYPHS if ord(c) not in font.face.charToGlyph]
                if missing:
                    raise ValueError(f"no glyphs for {''.join(missing)!r}")
            except Exception as exc:  # reportlab raises plain Exceptions for bad fonts
                if given:
                    raise UnsealableDocument(
                        f"{FONT_ENV}={path}: not a usable CJK TrueType font: {exc}"
                    ) from exc
                continue
            pdfmetrics.registerFont(font)
            return "EhubCJK", path
    if given:
        raise UnsealableDocument(f"{FONT_ENV}={given}: no such font file")
    log.warning(
        "no CJK TrueType font found (%s); licenses use the non-embedded %s font",
        ", ".join(FONT_CANDIDATES),
        _CID_FONT,
    )
    pdfmetrics.registerFont(UnicodeCIDFont(_CID_FONT))
    return _CID_FONT, None


FONT, FONT_PATH = _register_font()
"""Font name used on the page, and the embedded TrueType file (None: CID fallback)."""

PAGE_WIDTH, PAGE_HEIGHT = A4
MARGIN = 36.0

SEAL_BOX: tuple[int, int, int, int] = (400, 96, 530, 226)
"""Area (x1, y1, x2, y2 in PDF points, origin bottom-left of page 1) kept
blank for the visible seal; about 46 mm square, room for a 42 mm round seal."""

_TABLE_TOP = 712.0
_TABLE_BOTTOM = SEAL_BOX[3] + 24.0
_LABEL_WIDTH = 118.0
_VALUE_WIDTH = PAGE_WIDTH - 2 * MARGIN - 48.0 - _LABEL_WIDTH

_LABEL_STYLE = ParagraphStyle(
    "label",
    fontName=FONT,
    bulletFontName=FONT,
    fontSize=11.5,
    leading=16,
    alignment=TA_LEFT,
    wordWrap="CJK",
)
_VALUE_STYLE = ParagraphStyle(
    "value",
    fontName=FONT,
    bulletFontName=FONT,
    fontSize=11.5,
    leading=16,
    alignment=TA_LEFT,
    wordWrap="CJK",
)


@dataclass(frozen=True, slots=True)
class LicenseView:
    """Display strings of one license, in the order they appear on the page."""

    title: str
    """License name shown as the page title, e.g. 营业执照."""
    identifier: str
    """GB/T 36904 license identifier (证照标识)."""
    number: str
    """License number (证照编号)."""
    holder_name: str
    """Holder (持证主体) name."""
    holder_code: str
    """Holder code: USCC, citizen ID number, ..."""
    issuer_name: str
    """Issuing authority (发证机关)."""
    issue_date: str
    """Issue date as displayed, e.g. 2024年05月20日."""
    validity: str
    """Validity as displayed, e.g. 2024年05月20日至长期."""
    surface: tuple[tuple[str, str], ...] = ()
    """Type-specific surface fields as (label, value), in display order."""
    seal_label: str = ""
    """Caption under the seal area, e.g. the seal's name."""
    verify_url: str = ""
    """Verification URL of this license, printed as a QR code (none when empty)."""
    holder_label: str = "持证主体"
    """Label of the holder row (the license type's own word: 名称, 姓名, 建设单位…)."""
    holder_code_label: str = "持证主体代码"
    """Label of the holder-code row (统一社会信用代码, 身份证件号码…)."""


def render_license_pdf(fields: LicenseView) -> bytes:
    """Lay out ``fields`` on one A4 page and return the PDF bytes.

    Raises :class:`UnsealableDocument` if the fields do not fit on one page
    above the seal area.
    """
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=A4, invariant=1, pageCompression=1, initialFontName=FONT)
    pdf.setTitle(f"{fields.title} {fields.number}")
    pdf.setSubject(fields.identifier)
    pdf.setAuthor(fields.issuer_name)
    pdf.setCreator("ehub")

    _draw_frame(pdf)
    _draw_title(pdf, fields.title)
    _draw_table(pdf, fields)
    _draw_issuer(pdf, fields)
    if fields.verify_url:
        _draw_qr(pdf, fields.verify_url)

    pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def _draw_frame(pdf: canvas.Canvas) -> None:
    pdf.setStrokeColor(colors.HexColor("#8B1A1A"))
    pdf.setLineWidth(2.2)
    pdf.rect(MARGIN, MARGIN, PAGE_WIDTH - 2 * MARGIN, PAGE_HEIGHT - 2 * MARGIN)
    pdf.setLineWidth(0.6)
    inset = MARGIN + 5
    pdf.rect(inset, inset, PAGE_WIDTH - 2 * inset, PAGE_HEIGHT - 2 * inset)


def _draw_title(pdf: canvas.Canvas, title: str) -> None:
    # CID fonts have no bold face: fill + stroke (render mode 2) thickens the title.
    size = 30
    spaced = " ".join(title) if len(title) <= 6 else title
    width = pdf.stringWidth(spaced, FONT, size)
    text = pdf.beginText((PAGE_WIDTH - width) / 2, 752)
    text.setFont(FONT, size)
    text.setTextRenderMode(2)
    pdf.setLineWidth(0.5)
    pdf.setFillColor(colors.HexColor("#8B1A1A"))
    pdf.setStrokeColor(colors.HexColor("#8B1A1A"))
    text.textOut(spaced)
    pdf.drawText(text)
    pdf.setFillColor(colors.black)
    pdf.setStrokeColor(colors.black)


def _rows(fields: LicenseView) -> list[tuple[str, str]]:
    return [
        ("证照标识", fields.identifier),
        ("证照编号", fields.number),
        (fields.holder_label, fields.holder_name),
        (fields.holder_code_label, fields.holder_code),
        *fields.surface,
        ("有效期限", fields.validity),
    ]


def _draw_table(pdf: canvas.Canvas, fields: LicenseView) -> None:
    data = [
        [Paragraph(escape(label), _LABEL_STYLE), Paragraph(escape(value), _VALUE_STYLE)]
        for label, value in _rows(fields)
    ]
    table = Table(data, colWidths=[_LABEL_WIDTH, _VALUE_WIDTH])
    table.setStyle(
        TableStyle(
            [
                ("FONTNAME", (0, 0), (-1, -1), FONT),  # else the cells set Helvetica
                ("GRID", (0, 0), (-1, -1), 0.6, colors.HexColor("#8B1A1A")),
                ("BACKGROUND", (0, 0), (0, -1), colors.HexColor("#F6EDE4")),
                ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
                ("TOPPADDING", (0, 0), (-1, -1), 6),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 6),
                ("LEFTPADDING", (0, 0), (-1, -1), 8),
            ]
        )
    )
    width, height = table.wrapOn(pdf, _LABEL_WIDTH + _VALUE_WIDTH, PAGE_HEIGHT)
    if _TABLE_TOP - height < _TABLE_BOTTOM:
        raise UnsealableDocument(
            f"license {fields.identifier or fields.number}: {len(data)} rows need "
            f"{height:.0f} pt, only {_TABLE_TOP - _TABLE_BOTTOM:.0f} pt fit above the seal area"
        )
    table.drawOn(pdf, (PAGE_WIDTH - width) / 2, _TABLE_TOP - height)


def _draw_issuer(pdf: canvas.Canvas, fields: LicenseView) -> None:
    x1, y1, x2, y2 = SEAL_BOX
    right = x1 - 14
    _fit_right(pdf, right, y2 - 48, f"发证机关：{fields.issuer_name}")
    _fit_right(pdf, right, y2 - 76, f"发证日期：{fields.issue_date}")
    if fields.seal_label:
        pdf.setFont(FONT, 8.5)
        pdf.setFillColor(colors.HexColor("#777777"))
        pdf.drawCentredString((x1 + x2) / 2, y1 - 12, fields.seal_label)
        pdf.setFillColor(colors.black)
    pdf.setFont(FONT, 8.5)
    pdf.setFillColor(colors.HexColor("#555555"))
    pdf.drawCentredString(
        PAGE_WIDTH / 2,
        MARGIN + 16,
        "本证照为电子证照，可凭证照标识核验真伪。",
    )
    pdf.setFillColor(colors.black)


def _fit_right(pdf: canvas.Canvas, right: float, y: float, text: str) -> None:
    # Long authority names shrink rather than run into the page frame.
    room = right - MARGIN - 16
    size = 13.0
    while size > 7 and pdf.stringWidth(text, FONT, size) > room:
        size -= 0.5
    pdf.setFont(FONT, size)
    pdf.drawRightString(right, y, text)


QR_BOX: tuple[float, float, float] = (MARGIN + 22, MARGIN + 34, 96.0)
"""Lower-left corner and side (PDF points) of the verification QR code."""
_QR_QUIET = 4  # modules of blank margin around the code (ISO/IEC 18004)


def _draw_qr(pdf: canvas.Canvas, url: str) -> None:
    # Encoded once and drawn as one filled rectangle per run of dark modules
    # (reportlab's QrCodeWidget encodes twice and draws each module: ~8x slower).
    qr = qrencoder.QRCode(None, qrencoder.QRErrorCorrectLevel.M)
    qr.addData(url)
    qr.make()
    n = qr.getModuleCount()
    x, y, side = QR_BOX
    module = side / (n + 2 * _QR_QUIET)
    path = pdf.beginPath()
    for r in range(n):
        top = y + side - (r + _QR_QUIET + 1) * module
        c = 0
        while c < n:
            if not qr.isDark(r, c):
                c += 1
                continue
            start = c
            while c < n and qr.isDark(r, c):
                c += 1
            path.rect(x + (start + _QR_QUIET) * module, top, (c - start) * module, module)
    pdf.setFillColor(colors.black)
    pdf.drawPath(path, stroke=0, fill=1)
    pdf.setFont(FONT, 8)
    pdf.setFillColor(colors.HexColor("#555555"))
    pdf.drawCentredString(x + side / 2, y - 10, "扫码核验")
    pdf.setFillColor(colors.black)
