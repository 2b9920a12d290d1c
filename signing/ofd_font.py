"""A Unicode-mapped TrueType subset of the license font, to embed in an OFD.

The PDF renderer embeds the CJK TrueType font found by :mod:`signing.render`
(AR PL SungtiL GB, about 5 MB) as a subset. An OFD ``TextCode`` holds Unicode
text and the reader maps it to glyphs through the font's own ``cmap``, so the
embedded file must map Unicode code points. reportlab's subsetter keeps the
glyphs, metrics and hinting tables but writes a private (Macintosh, format 6)
``cmap`` numbering the subset's characters 0..n-1; :func:`font_subset`
replaces it with a Windows Unicode BMP ``cmap`` (platform 3, encoding 1,
format 4), one segment per character. This keeps an OFD at tens of kilobytes
instead of carrying the whole 5 MB font. (``fontTools`` would do the same and
more, but is not a dependency.)

Pure: the same characters always give the same bytes. The font face is shared
with :mod:`signing.render` and reportlab's subsetter moves a read cursor in it,
so subsetting is serialised with a lock.
"""

from __future__ import annotations

import functools
import struct
import threading

from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFontFace, TTFontMaker

from signing import render
from signing.errors import UnsealableDocument

_lock = threading.Lock()


def font_face() -> TTFontFace | None:
    """The embedded TrueType face of the license page (None: the CID fallback font)."""
    if render.FONT_PATH is None:
        return None
    face = pdfmetrics.getFont(render.FONT).face
    return face if isinstance(face, TTFontFace) else None


def font_family() -> str:
    """The family name written into the OFD font resource."""
    face = font_face()
    if face is None:
        return "SimSun"  # CID fallback: nothing embedded, the reader substitutes a 宋体
    return str(getattr(face, "familyName", b"") or b"", "latin-1", "replace") or "EhubCJK"


def _tables(ttf: bytes) -> dict[str, bytes]:
    count = struct.unpack(">H", ttf[4:6])[0]
    out: dict[str, bytes] = {}
    for i in range(count):
        tag, _, offset, length = struct.unpack(">4sLLL", ttf[12 + 16 * i : 28 + 16 * i])
        out[tag.decode("latin-1")] = ttf[offset : offset + length]
    return out


def _cmap_format4(mapping: dict[int, int]) -> bytes:
    codes = sorted(c for c in mapping if c < 0xFFFF)
    segments = [(c, c, (mapping[c] - c) % 0x10000) for c in codes] + [(0xFFFF, 0xFFFF, 1)]
    n = len(segments)
    search = 2 ** (n.bit_length() - 1)
    head = struct.pack(
        ">HHHHHHH", 4, 16 + 8 * n, 0, 2 * n, 2 * search, search.bit_length() - 1, 2 * (n - search)
    )
    body = struct.pack(f">{n}H", *(end for _, end, _ in segments))
    body += b"\x00\x00" + struct.pack(f">{n}H", *(start for start, _, _ in segments))
    body += struct.pack(f">{n}H", *(delta for _, _, delta in segments))
    body += b"\x00\x00" * n  # idRangeOffset: 0, glyph = code + idDelta
    sub = head + body
    return struct.pack(">HHHHL", 0, 1, 3, 1, 12) + sub


@functools.lru_cache(maxsize=256)
def font_subset(chars: str) -> bytes:
    """A TrueType font with the glyphs of ``chars`` mapped from their code points.

    Raises :class:`UnsealableDocument` when there is no embeddable font.
    """
    face = font_face()
    if face is None:
        raise UnsealableDocument("no CJK TrueType font to embed (see signing.render.FONT_ENV)")
    codes = sorted({ord(c) for c in chars} | {0x20})
    with _lock:
        subset = face.makeSubset(codes)
    tables = _tables(subset)
    # reportlab's format-6 table lists, for the i-th requested code, its new glyph id.
    fmt6 = tables["cmap"][12:]
    count = struct.unpack(">H", fmt6[8:10])[0]
    glyphs = struct.unpack(f">{count}H", fmt6[10 : 10 + 2 * count])
    tables["cmap"] = _cmap_format4(dict(zip(codes, glyphs, strict=True)))
    maker = TTFontMaker()
    for tag in sorted(tables):
        maker.add(tag, tables[tag])
    return bytes(maker.makeStream())


def text_width_mm(text: str, size_mm: float) -> float:
    """Advance width of ``text`` set in the page font at ``size_mm``."""
    return float(pdfmetrics.stringWidth(text, render.FONT, size_mm))


def advances_mm(text: str, size_mm: float) -> list[float]:
    """Per-character advance widths (for an OFD ``DeltaX``)."""
    return [float(pdfmetrics.stringWidth(c, render.FONT, size_mm)) for c in text]
