"""The PDF file of a fast-sealed license: one revision, signature placeholders included.

:func:`assemble` writes the objects of :mod:`signing.fastpades`' documents
(catalog with ``/AcroForm``, page, content, Type 0 font with its subset and
ToUnicode map, QR image, signature field + widget with the seal's appearance,
signature dictionary, document information) with a classic cross-reference
table, and returns where the ``/Contents`` placeholder lies so that the caller
can hash the rest and splice the signature container in.

Numbers are written with at most four decimals; strings as PDF text strings
(UTF-16BE with a byte-order mark when not ASCII). Nothing here signs.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from PIL import Image

from signing import render
from signing.errors import KeyAccessError
from signing.fastrender import RenderedPage, _n
from signing.render import LicenseView

_RANGE_WIDTH = 48  # "/ByteRange [0 a b c]" padded to this many characters
_SEAL_RED = "0.72 0.08 0.08"


@dataclass(frozen=True, slots=True)
class SealImage:
    """The seal picture as PDF image data, compressed once per sealer."""

    rgb: bytes
    alpha: bytes
    width: int
    height: int


def seal_image_parts(path: Path | str | None) -> SealImage | None:
    if path is None:
        return None
    try:
        with Image.open(path) as img:
            rgba = img.convert("RGBA")
    except OSError as exc:
        raise KeyAccessError(f"seal image {path} cannot be read: {exc}") from exc
    rgb = rgba.convert("RGB").tobytes()
    alpha = rgba.getchannel("A").tobytes()
    return SealImage(zlib.compress(rgb, 9), zlib.compress(alpha, 9), rgba.width, rgba.height)


@dataclass(frozen=True, slots=True)
class PdfParts:
    page: RenderedPage
    view: LicenseView
    image: SealImage | None
    field_name: str
    signing_time: datetime
    reason: str
    location: str
    cert_id: str
    face: Any
    """The font's reportlab face (metrics for the font descriptor)."""
    reserve: int
    """Bytes reserved for the signature container (hex: twice as many digits)."""


def _text(value: str) -> bytes:
    if value.isascii():
        escaped = value.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        return b"(" + escaped.encode("ascii") + b")"
    return b"<FEFF" + value.encode("utf-16-be").hex().upper().encode("ascii") + b">"


def _date(moment: datetime) -> bytes:
    offset = moment.utcoffset()
    assert offset is not None
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    hh, mm = divmod(abs(minutes), 60)
    return f"(D:{moment:%Y%m%d%H%M%S}{sign}{hh:02d}'{mm:02d}')".encode("ascii")


def _stream(head: str, data: bytes) -> bytes:
    return f"<< {head} /Length {len(data)} >>\nstream\n".encode("ascii") + data + b"\nendstream"


_WIDTHS: dict[float, str] = {}
_UNICODE: dict[str, str] = {}


def _width_text(width: float) -> str:
    text = _WIDTHS.get(width)
    if text is None:
        text = _WIDTHS[width] = _n(width)
    return text


def _unicode(char: str) -> str:
    text = _UNICODE.get(char)
    if text is None:
        text = _UNICODE[char] = char.encode("utf-16-be").hex().upper()
    return text


def _tounicode(chars: str) -> bytes:
    lines = [
        "/CIDInit /ProcSet findresource begin 12 dict begin begincmap",
        "/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def",
        "/CMapName /Adobe-Identity-UCS def /CMapType 2 def",
        "1 begincodespacerange <0000> <FFFF> endcodespacerange",
    ]
    for start in range(0, len(chars), 100):
        block = chars[start : start + 100]
        lines.append(f"{len(block)} beginbfchar")
        for k, c in enumerate(block, start + 1):
            lines.append(f"<{k:04X}> <{_unicode(c)}>")
        lines.append("endbfchar")
    lines.append("endcmap CMapName currentdict /CMap defineresource pop end end")
    return zlib.compress("\n".join(lines).encode("ascii"), 6)


def _appearance(parts: PdfParts, box: tuple[int, int, int, int]) -> tuple[bytes, list[bytes]]:
    """The widget's normal appearance (object 13) and the image objects it uses (14, 15)."""
    w, h = box[2] - box[0], box[3] - box[1]
    stamp = parts.signing_time.strftime("%Y-%m-%d %H:%M:%S %Z")
    if parts.image is not None:
        img = parts.image
        scale = min(w / img.width, h / img.height)
        iw, ih = img.width * scale, img.height * scale
        ops = (f"q {_n(iw)} 0 0 {_n(ih)} {_n((w - iw) / 2)} {_n((h - ih) / 2)} cm /Seal Do Q "
               f"BT {_SEAL_RED} rg /Cour 6 Tf {_n(w / 2 - 1.8 * len(stamp))} 4 Td "
               f"{_text(stamp).decode('ascii')} Tj ET")  # fmt: skip
        images = [
            _stream(f"/Type /XObject /Subtype /Image /Width {img.width} /Height {img.height} "
                    "/ColorSpace /DeviceRGB /BitsPerComponent 8 /Filter /FlateDecode "
                    "/SMask 15 0 R", img.rgb),
            _stream(f"/Type /XObject /Subtype /Image /Width {img.width} /Height {img.height} "
                    "/ColorSpace /DeviceGray /BitsPerComponent 8 /Filter /FlateDecode", img.alpha),
        ]  # fmt: skip
        resources = "/XObject << /Seal 14 0 R >> /Font << /Cour 16 0 R >>"
    else:
        texts = ["ELECTRONIC SEAL", f"ID {parts.cert_id}", stamp]
        shown = " 0 -12 Td ".join(f"{_text(t).decode('ascii')} Tj" for t in texts)
        body = f"6 {h - 20} Td {shown}"
        ops = (
            f"q {_SEAL_RED} RG 2 w 1 1 {_n(w - 2)} {_n(h - 2)} re S Q "
            f"BT {_SEAL_RED} rg /Cour 7 Tf {body} ET"
        )
        images = [b"<< >>", b"<< >>"]
        resources = "/Font << /Cour 16 0 R >>"
    form = _stream(f"/Type /XObject /Subtype /Form /BBox [0 0 {w} {h}] /Resources << {resources} >>",
                   ops.encode("ascii"))  # fmt: skip
    return form, images


def assemble(parts: PdfParts) -> tuple[bytearray, tuple[int, int, int, int]]:
    """The document with a zero-filled ``/Contents`` and its final ``/ByteRange``."""
    page, view, font = parts.page, parts.view, parts.page.font
    box = render.SEAL_BOX
    tag = "".join(chr(65 + b % 26) for b in hashlib.sha256(font.chars.encode()).digest()[:6])
    face = parts.face
    base = face.name.decode("latin-1") if isinstance(face.name, bytes) else str(face.name)
    name = f"/{tag}+{base}"
    widths = " ".join(map(_width_text, font.widths))
    objects: dict[int, bytes] = {}
    objects[1] = b"<< /Type /Catalog /Pages 2 0 R /AcroForm << /Fields [5 0 R] /SigFlags 3 >> >>"
    objects[2] = b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>"
    objects[3] = (
        f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {_n(render.PAGE_WIDTH)} "
        f"{_n(render.PAGE_HEIGHT)}] /Resources << /Font << /F1 7 0 R >> "
        "/ProcSet [/PDF /Text] >> /Contents 4 0 R /Annots [5 0 R] >>"
    ).encode("ascii")
    objects[4] = _stream("/Filter /FlateDecode", page.content)
    objects[5] = (
        "<< /Type /Annot /Subtype /Widget /FT /Sig /T ".encode("ascii")
        + _text(parts.field_name)
        + f" /V 6 0 R /F 132 /P 3 0 R /Rect [{box[0]} {box[1]} {box[2]} {box[3]}] "
        "/AP << /N 13 0 R >> >>".encode("ascii")
    )
    sig_head = (
        b"<< /Type /Sig /Filter /Adobe.PPKLite /SubFilter /ETSI.CAdES.detached /M "
        + _date(parts.signing_time)
        + b" /Reason "
        + _text(parts.reason)
        + b" /Location "
        + _text(parts.location)
        + b"\n/ByteRange "
    )
    objects[6] = (
        sig_head + b" " * _RANGE_WIDTH + b"\n/Contents <" + b"0" * (2 * parts.reserve) + b"> >>"
    )
    objects[7] = (
        f"<< /Type /Font /Subtype /Type0 /BaseFont {name} /Encoding /Identity-H "
        "/DescendantFonts [8 0 R] /ToUnicode 11 0 R >>"
    ).encode("latin-1")
    bbox = " ".join(_n(v) for v in face.bbox)
    objects[8] = (
        f"<< /Type /Font /Subtype /CIDFontType2 /BaseFont {name} /CIDSystemInfo << /Registry "
        f"(Adobe) /Ordering (Identity) /Supplement 0 >> /FontDescriptor 9 0 R "
        f"/DW {_n(face.defaultWidth)} /W [1 [{widths}]] /CIDToGIDMap /Identity >>"
    ).encode("latin-1")
    objects[9] = (
        f"<< /Type /FontDescriptor /FontName {name} /Flags {face.flags} /FontBBox [{bbox}] "
        f"/ItalicAngle {_n(face.italicAngle)} /Ascent {_n(face.ascent)} /Descent "
        f"{_n(face.descent)} /CapHeight {_n(face.capHeight)} /StemV {face.stemV} "
        "/FontFile2 10 0 R >>"
    ).encode("latin-1")
    objects[10] = _stream(f"/Filter /FlateDecode /Length1 {font.length1}", font.stream)
    objects[11] = _stream("/Filter /FlateDecode", _tounicode(font.chars))
    objects[12] = b"<< >>"  # free (the QR code is drawn in the page); keeps the numbering
    objects[13], (objects[14], objects[15]) = _appearance(parts, box)
    objects[16] = b"<< /Type /Font /Subtype /Type1 /BaseFont /Courier /Encoding /WinAnsiEncoding >>"
    when = _date(parts.signing_time)
    objects[17] = (
        b"<< /Title " + _text(f"{view.title} {view.number}") + b" /Subject " + _text(view.identifier)
        + b" /Author " + _text(view.issuer_name) + b" /Creator (ehub) /Producer (ehub fastpades)"
        + b" /CreationDate " + when + b" /ModDate " + when + b" >>"
    )  # fmt: skip
    doc_id = hashlib.sha256(page.content + font.chars.encode() + when).hexdigest()[:32].upper()
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    range_at = contents_at = 0
    for num in range(1, 18):
        offsets.append(len(out))
        head = f"{num} 0 obj\n".encode("ascii")
        if num == 6:
            range_at = len(out) + len(head) + len(sig_head)
            contents_at = range_at + _RANGE_WIDTH + len(b"\n/Contents ")
        out += head + objects[num] + b"\nendobj\n"
    xref_at = len(out)
    out += b"xref\n0 18\n0000000000 65535 f \n"
    out += b"".join(b"%010d 00000 n \n" % at for at in offsets)
    out += (f"trailer\n<< /Size 18 /Root 1 0 R /Info 17 0 R /ID [<{doc_id}> <{doc_id}>] >>\n"
            f"startxref\n{xref_at}\n%%EOF\n").encode("ascii")  # fmt: skip
    gap_end = contents_at + 2 + 2 * parts.reserve
    ranges = (0, contents_at, gap_end, len(out) - gap_end)
    text = f"[{ranges[0]} {ranges[1]} {ranges[2]} {ranges[3]}]".encode("ascii")
    out[range_at : range_at + len(text)] = text
    return out, ranges
