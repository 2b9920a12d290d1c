"""The license page of :mod:`signing.render`, laid out without reportlab's document machinery.

:func:`signing.render.render_license_pdf` builds every page through reportlab's
platypus (paragraphs, a table), encodes the QR code with reportlab's pure-Python
encoder and subsets and compresses the CJK font for each document: ~30 ms a
license. The bulk-sealing fast path (:mod:`signing.fastpades`) needs the same
page in well under a millisecond, so :class:`FastPage` reproduces its layout
directly as a content stream:

- the same geometry: the constants and the fonts of :mod:`signing.render`
  (frame, title, table, issuer lines, seal caption, footer, QR box), the table's
  column widths, paddings and row heights, and reportlab's own CJK line breaking
  (a port of ``reportlab.platypus.paragraph.cjkFragSplit`` for one-style text,
  with reportlab's whitespace cleaning and its no-line-start punctuation);
  ``tests/signing/test_fastpades.py`` checks that ``pdftotext`` reads the same
  text from both renderers;
- text in a Type 0 font (``Identity-H``, CIDs assigned per document in order of
  first use) over the per-document subset of :mod:`signing.fastfont`;
- the QR code of :mod:`signing.fastqr` (numpy, not reportlab's encoder), one
  rectangle per run of modules in module units under one matrix.

This module lays out and encodes the page only; the PDF objects around it and
the signature are :mod:`signing.fastpades`' job. It reads no clock.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from unicodedata import category

import numpy as np
from reportlab.lib.textsplit import ALL_CANNOT_START
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.platypus.paragraph import cleanBlockQuotedText
from reportlab.rl_config import _FUZZ

from signing import render
from signing.errors import UnsealableDocument
from signing.fastfont import FontSubset, SubsetFont
from signing.fastqr import qr_matrix
from signing.render import LicenseView

__all__ = ["FastPage", "RenderedPage"]

_RED = "0.545098 0.101961 0.101961"  # #8B1A1A
_SIZE = 11.5  # _LABEL_STYLE / _VALUE_STYLE
_LEADING = 16.0
_PAD_TOP = _PAD_BOTTOM = 6.0
_PAD_LEFT = 8.0
_PAD_RIGHT = 6.0  # reportlab's default RIGHTPADDING
_TABLE_WIDTH = render._LABEL_WIDTH + render._VALUE_WIDTH


def _qr_runs(qr: np.ndarray, x: float, y: float, side: float) -> str:
    """One filled rectangle per run of dark modules, in black (render._draw_qr's geometry),
    in module units under one scaling matrix: integer operands, cheap to write."""
    n, quiet = qr.shape[0], render._QR_QUIET
    module = side / (n + 2 * quiet)
    padded = np.zeros((n, n + 2), dtype=np.int8)
    padded[:, 1:-1] = qr
    edges = np.diff(padded, axis=1)
    starts, ends = np.nonzero(edges == 1), np.nonzero(edges == -1)  # row-major: they pair up
    rects = [f"{c} {n - 1 - r} {e - c} 1 re"
             for r, c, e in zip(starts[0].tolist(), starts[1].tolist(), ends[1].tolist(),
                                strict=True)]  # fmt: skip
    origin = f"{_n(x + quiet * module)} {_n(y + quiet * module)}"
    return f"q {_n(module)} 0 0 {_n(module)} {origin} cm 0 0 0 rg\n" + "\n".join(rects) + "\nf Q"


def _n(value: float) -> str:
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


@dataclass(frozen=True, slots=True)
class RenderedPage:
    """One license page: its compressed content stream and the resources it uses."""

    content: bytes
    """Flate-compressed content stream (the QR code drawn in it as vector runs); fonts as /F1."""
    font: FontSubset
    qr_rect: tuple[float, float, float]
    """(x, y, side) of the QR code's box in page space."""


class FastPage:
    """Lays out license pages in :mod:`signing.render`'s design. One per process."""

    def __init__(self) -> None:
        self.font = SubsetFont(render.FONT)
        self._widths: dict[str, float] = {}

    def _w(self, char: str) -> float:
        width = self._widths.get(char)
        if width is None:
            width = self._widths[char] = stringWidth(char, render.FONT, _SIZE)
        return width

    def render(self, view: LicenseView) -> RenderedPage:
        """The page of ``view``. Raises :class:`UnsealableDocument` when the fields do
        not fit above the seal area (the same rule and message as the normal renderer)."""
        cids: dict[str, str] = {}
        ops: list[str] = []

        def hexa(text: str) -> str:
            for c in text:
                if c not in cids:
                    cids[c] = f"{len(cids) + 1:04X}"
            return "<" + "".join(map(cids.__getitem__, text)) + ">"

        def line(x: float, y: float, size: float, text: str) -> None:
            ops.append(f"BT 1 0 0 1 {_n(x)} {_n(y)} Tm /F1 {_n(size)} Tf {hexa(text)} Tj ET")

        # Frame (render._draw_frame).
        m, w, h = render.MARGIN, render.PAGE_WIDTH, render.PAGE_HEIGHT
        ops.append(f"{_RED} RG 2.2 w {_n(m)} {_n(m)} {_n(w - 2 * m)} {_n(h - 2 * m)} re S")
        inset = m + 5
        ops.append(f"0.6 w {_n(inset)} {_n(inset)} {_n(w - 2 * inset)} {_n(h - 2 * inset)} re S")
        # Title (render._draw_title): fill + stroke.
        spaced = " ".join(view.title) if len(view.title) <= 6 else view.title
        tw = stringWidth(spaced, render.FONT, 30)
        ops.append(f"0.5 w {_RED} rg {_RED} RG 2 Tr")
        line((w - tw) / 2, 752, 30, spaced)
        ops.append("0 0 0 rg 0 0 0 RG")
        self._table(view, ops, line)
        self._issuer(view, ops, line)
        x, y, side = render.QR_BOX
        if view.verify_url:
            # Vector runs like render._draw_qr: a 1-bit image scaled by a viewer at
            # 150 dpi samples modules unevenly and zbar can no longer read it.
            ops.append(_qr_runs(qr_matrix(view.verify_url), x, y, side))
            ops.append("0.333333 0.333333 0.333333 rg")
            line(x + side / 2 - stringWidth("扫码核验", render.FONT, 8) / 2, y - 10, 8, "扫码核验")
            ops.append("0 0 0 rg")
        content = zlib.compress("\n".join(ops).encode("ascii"), 6)
        return RenderedPage(content, self.font.subset("".join(cids)), (x, y, side))

    def _table(self, view: LicenseView, ops: list[str], line: object) -> None:
        label_width = render._LABEL_WIDTH - _PAD_LEFT - _PAD_RIGHT
        value_width = render._VALUE_WIDTH - _PAD_LEFT - _PAD_RIGHT
        rows = [
            (self._wrap(label, label_width), self._wrap(value, value_width))
            for label, value in render._rows(view)
        ]
        heights = [max(len(a), len(b)) * _LEADING + _PAD_TOP + _PAD_BOTTOM for a, b in rows]
        total = sum(heights)
        if render._TABLE_TOP - total < render._TABLE_BOTTOM:
            raise UnsealableDocument(
                f"license {view.identifier or view.number}: {len(rows)} rows need "
                f"{total:.0f} pt, only {render._TABLE_TOP - render._TABLE_BOTTOM:.0f} pt fit "
                "above the seal area"
            )
        x0 = (render.PAGE_WIDTH - _TABLE_WIDTH) / 2
        y0 = render._TABLE_TOP - total
        ops.append(f"0.964706 0.929412 0.894118 rg {_n(x0)} {_n(y0)} "
                   f"{_n(render._LABEL_WIDTH)} {_n(total)} re f 0 0 0 rg")  # fmt: skip
        top = y0 + total
        for (label, value), height in zip(rows, heights, strict=True):
            bottom = top - height
            for lines, cx in ((label, _PAD_LEFT), (value, render._LABEL_WIDTH + _PAD_LEFT)):
                para = len(lines) * _LEADING
                base = bottom + (height - para) / 2 + para - _SIZE
                for k, text in enumerate(lines):
                    line(x0 + cx, base - k * _LEADING, _SIZE, text)  # type: ignore[operator]
            top = bottom
        grid = [f"q 1 J 1 j {_RED} RG 0.6 w"]
        edges = [y0 + total]
        for height in heights:
            edges.append(edges[-1] - height)
        for ey in edges:
            grid.append(f"{_n(x0)} {_n(ey)} m {_n(x0 + _TABLE_WIDTH)} {_n(ey)} l S")
        for ex in (x0, x0 + render._LABEL_WIDTH, x0 + _TABLE_WIDTH):
            grid.append(f"{_n(ex)} {_n(y0)} m {_n(ex)} {_n(y0 + total)} l S")
        grid.append("Q")
        ops.extend(grid)

    def _issuer(self, view: LicenseView, ops: list[str], line: object) -> None:
        x1, y1, x2, y2 = render.SEAL_BOX
        right = x1 - 14
        for y, text in ((y2 - 48, f"发证机关：{view.issuer_name}"),
                        (y2 - 76, f"发证日期：{view.issue_date}")):  # fmt: skip
            room = right - render.MARGIN - 16
            size = 13.0
            while size > 7 and stringWidth(text, render.FONT, size) > room:
                size -= 0.5
            line(right - stringWidth(text, render.FONT, size), y, size, text)  # type: ignore[operator]
        if view.seal_label:
            ops.append("0.466667 0.466667 0.466667 rg")
            lw = stringWidth(view.seal_label, render.FONT, 8.5)
            line((x1 + x2) / 2 - lw / 2, y1 - 12, 8.5, view.seal_label)  # type: ignore[operator]
            ops.append("0 0 0 rg")
        footer = "本证照为电子证照，可凭证照标识核验真伪。"
        ops.append("0.333333 0.333333 0.333333 rg")
        fw = stringWidth(footer, render.FONT, 8.5)
        line(render.PAGE_WIDTH / 2 - fw / 2, render.MARGIN + 16, 8.5, footer)  # type: ignore[operator]
        ops.append("0 0 0 rg")

    def _wrap(self, value: str, max_width: float) -> list[str]:
        """reportlab's CJK line breaking (``cjkFragSplit``) of one paragraph of one style."""
        text = cleanBlockQuotedText(value)
        chars = list(text)
        widths = [self._w(c) for c in chars]
        if sum(widths) <= max_width:
            return [text] if text else []
        lines: list[str] = []
        i = start = 0
        used = 0.0
        n = len(chars)
        while i < n:
            u = chars[i]
            w = widths[i]
            i += 1
            used += w
            if used > max_width + _FUZZ and used > 0:
                if ord(u) < 0x3000:
                    # Inside a non-Asian run: break after the last space or CJK
                    # character of the second half of the line, if any.
                    for j in range(i - 1, (start + i) >> 1, -1):
                        uj = chars[j]
                        if (uj and category(uj) == "Zs") or ord(uj) >= 0x3000:
                            k = j + 1
                            if k < i:
                                j = k + 1
                                w = widths[k]
                                u = chars[k]
                                i = j
                                break
                if u not in ALL_CANNOT_START and i > start + 1:
                    i -= 1
                lines.append("".join(chars[start:i]))
                start = i
                used = 0.0
        if used > 0:
            lines.append("".join(chars[start:]))
        return lines
