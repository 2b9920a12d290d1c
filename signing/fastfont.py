"""Per-document TrueType subsets of the license font, assembled from cached parts.

Every license PDF must embed the glyphs it shows (:mod:`signing.render` does
it through reportlab, which subsets and compresses the font anew for each
document: a few milliseconds). The fast path (:mod:`signing.fastrender`)
builds the subset by concatenation instead:

- each character's glyph (``glyf`` entry, padded to four bytes) is read once
  per process, with its checksum and its advance width, and compressed once
  as a self-contained raw-deflate segment (``Z_FULL_FLUSH`` resets the
  compressor, so segments concatenate in any order into one valid stream);
- a document's subset gives CID ``i`` (1-based, in order of first use; 0 is
  ``.notdef``) to its ``i``-th distinct character, so the subset's glyph ``i``
  is that character's glyph and the PDF uses ``CIDToGIDMap /Identity``;
- the small tables (``head``, ``hhea``, ``maxp``, ``hmtx``, ``loca``, and the
  hinting tables copied as they are) are written per document and the
  ``glyf`` table is the cached segments: the ``FontFile2`` stream is one zlib
  stream whose Adler-32 is computed over the concatenated raw bytes.

Characters the font lacks get ``.notdef``'s glyph under their own CID, so
their text still extracts (ToUnicode). Composite glyphs have their component
references remapped to the subset's glyph ids.

This module only builds font programs; it writes no PDF objects.
"""

from __future__ import annotations

import itertools
import struct
import zlib
from dataclasses import dataclass

from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont

from signing.errors import UnsealableDocument

_COPIED = (b"cvt ", b"fpgm", b"prep")
_ARGS_ARE_WORDS, _HAS_SCALE, _MORE, _XY_SCALE, _TWO_BY_TWO = 0x1, 0x8, 0x20, 0x40, 0x80


def _segment(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush(zlib.Z_FULL_FLUSH)


def _checksum(data: bytes) -> int:
    padded = data + b"\0" * (-len(data) % 4)
    return sum(struct.unpack(f">{len(padded) // 4}I", padded)) & 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class _Glyph:
    data: bytes
    """The glyf entry padded to 4 bytes (b'' for an empty glyph)."""
    checksum: int
    segment: bytes
    hmtx: bytes
    """The glyph's horizontal metrics record (advance, left side bearing)."""
    components: tuple[int, ...]
    """Glyph ids of a composite glyph's components (empty for a simple glyph)."""


@dataclass(frozen=True, slots=True)
class FontSubset:
    """One document's embedded font: the FontFile2 stream and what the PDF needs."""

    stream: bytes
    """zlib-compressed TrueType program (the FontFile2 stream data)."""
    length1: int
    """Uncompressed length of the program."""
    widths: tuple[float, ...]
    """Advance width of CIDs 1..n in 1/1000 em (the /W array)."""
    chars: str
    """The character of CIDs 1..n (for ToUnicode)."""


class SubsetFont:
    """The license font (the TrueType font :mod:`signing.render` registered), ready to
    be subset per document. One instance per process; not thread-safe."""

    def __init__(self, font_name: str) -> None:
        font = pdfmetrics.getFont(font_name)
        if not isinstance(font, TTFont):
            raise UnsealableDocument(
                f"the fast sealing path needs an embeddable TrueType font, not {font_name} "
                "(install fonts-arphic-gbsn00lp or set EHUB_CJK_FONT)"
            )
        face = font.face
        self.face = face
        self.font_name = font_name
        self.base_font: str = (
            face.name.decode("latin-1") if isinstance(face.name, bytes) else str(face.name)
        )
        self._glyf = face.get_table("glyf")
        self._positions: list[int] = face.glyphPos
        self._hmetrics: list[tuple[int, int]] = face.hmetrics
        self._head = bytearray(face.get_table("head"))
        self._hhea = bytearray(face.get_table("hhea"))
        self._maxp = bytearray(face.get_table("maxp"))
        self._copied = {
            t.decode(): face.get_table(t.decode()) for t in _COPIED if t.decode() in face.table
        }
        self._by_gid: dict[int, _Glyph] = {}
        self._char_gid: dict[int, int] = face.charToGlyph
        self._char_width: dict[int, float] = face.charWidths
        self._default_width = float(face.defaultWidth)
        self._by_char: dict[str, _Glyph] = {}
        self._notdef = self._glyph(0)

    def width(self, char: str) -> float:
        """Advance width of ``char`` in 1/1000 em, as reportlab measures it."""
        return self._char_width.get(ord(char), self._default_width)

    def _glyph(self, gid: int) -> _Glyph:
        glyph = self._by_gid.get(gid)
        if glyph is None:
            start, end = self._positions[gid], self._positions[gid + 1]
            data = self._glyf[start:end]
            data += b"\0" * (-len(data) % 4)
            components: tuple[int, ...] = ()
            if len(data) >= 10 and struct.unpack(">h", data[:2])[0] < 0:
                components = tuple(gid for _, gid in _component_refs(data))
            metrics = self._hmetrics[min(gid, len(self._hmetrics) - 1)]
            hmtx = struct.pack(">Hh", metrics[0], metrics[1])
            glyph = _Glyph(data, _checksum(data), _segment(data), hmtx, components)
            self._by_gid[gid] = glyph
        return glyph

    def subset(self, chars: str) -> FontSubset:
        """The subset holding ``chars`` (distinct, in CID order 1..n)."""
        by_char = self._by_char
        glyphs = [self._notdef]
        for c in chars:
            glyph = by_char.get(c)
            if glyph is None:
                glyph = by_char[c] = self._glyph(self._char_gid.get(ord(c), 0))
            glyphs.append(glyph)
        gids = [0] * len(glyphs)
        # Components of composite glyphs are appended as extra glyphs.
        extra: dict[int, int] = {}
        queue = [c for g in glyphs for c in g.components]
        while queue:
            gid = queue.pop()
            if gid not in extra:
                extra[gid] = len(gids) + len(extra)
                queue.extend(self._glyph(gid).components)
        if extra:
            gids += list(extra)
            glyphs += [self._glyph(g) for g in extra]
            glyphs = [_remapped(g, extra) for g in glyphs]
        n = len(glyphs)
        offsets = [0, *itertools.accumulate(len(g.data) for g in glyphs)]
        offset = offsets[-1]
        loca = struct.pack(f">{len(offsets)}I", *offsets)
        hmtx = b"".join([g.hmtx for g in glyphs])
        head = bytearray(self._head)
        head[8:12] = b"\0\0\0\0"
        head[50:52] = struct.pack(">h", 1)  # long loca offsets
        hhea = bytearray(self._hhea)
        hhea[34:36] = struct.pack(">H", n)
        maxp = bytearray(self._maxp)
        maxp[4:6] = struct.pack(">H", n)
        small = {"head": bytes(head), "hhea": bytes(hhea), "maxp": bytes(maxp),
                 "hmtx": hmtx, "loca": bytes(loca), **self._copied}  # fmt: skip
        glyf_sum = sum(g.checksum for g in glyphs) & 0xFFFFFFFF
        tags = sorted([*small, "glyf"])
        num = len(tags)
        entry = 1 << (num.bit_length() - 1)
        header = struct.pack(">IHHHH", 0x00010000, num, entry * 16, entry.bit_length() - 1,
                             num * 16 - entry * 16)  # fmt: skip
        # Table data in file order: the small tables, then glyf (so the cached
        # glyph segments end the stream).
        at = 12 + 16 * num
        records = {}
        body = bytearray()
        for tag in [t for t in tags if t != "glyf"]:
            data = small[tag]
            records[tag] = (_checksum(data), at + len(body), len(data))
            body += data + b"\0" * (-len(data) % 4)
        records["glyf"] = (glyf_sum, at + len(body), offset)
        directory = header + b"".join(
            tag.encode("latin-1") + struct.pack(">III", *records[tag]) for tag in tags
        )
        total = (_checksum(directory) + sum(r[0] for r in records.values())) & 0xFFFFFFFF
        adjust = (0xB1B0AFBA - total) & 0xFFFFFFFF
        head_at = records["head"][1] - at
        body[head_at + 8 : head_at + 12] = struct.pack(">I", adjust)
        prefix = directory + bytes(body)
        raw_parts = [prefix, *(g.data for g in glyphs)]
        adler = 1
        for part in raw_parts:
            adler = zlib.adler32(part, adler)
        stream = b"".join(
            [b"\x78\x9c", _segment(prefix), *(g.segment for g in glyphs), b"\x03\x00",
             struct.pack(">I", adler)]
        )  # fmt: skip
        widths = tuple(self.width(c) for c in chars)
        return FontSubset(stream, len(prefix) + offset, widths, chars)


def _component_refs(data: bytes) -> list[tuple[int, int]]:
    """(offset of the glyph index field, glyph index) of each component of a composite."""
    refs = []
    at = 10
    while True:
        flags, gid = struct.unpack(">HH", data[at : at + 4])
        refs.append((at + 2, gid))
        at += 4 + (4 if flags & _ARGS_ARE_WORDS else 2)
        if flags & _HAS_SCALE:
            at += 2
        elif flags & _XY_SCALE:
            at += 4
        elif flags & _TWO_BY_TWO:
            at += 8
        if not flags & _MORE:
            return refs


def _remapped(glyph: _Glyph, new_ids: dict[int, int]) -> _Glyph:
    if not glyph.components:
        return glyph
    data = bytearray(glyph.data)
    for at, gid in _component_refs(glyph.data):
        data[at : at + 2] = struct.pack(">H", new_ids[gid])
    raw = bytes(data)
    return _Glyph(raw, _checksum(raw), _segment(raw), glyph.hmtx, glyph.components)
