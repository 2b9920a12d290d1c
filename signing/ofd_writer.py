"""Write an e-license as a one-page OFD package (GB/T 33190-2016), ready to be sealed.

:func:`write_license_ofd` lays out the same display strings as the PDF
(:func:`ehub.templates.license_view` → :class:`signing.render.LicenseView`,
rows from :mod:`signing.render`'s field list) on an A4 page in millimetres,
and writes the package parts of STANDARDS.md §5:

- ``OFD.xml``: ``DocBody`` → ``DocInfo`` (DocID, Title, CreationDate, Creator
  and ``CustomDatas`` carrying the e-license metadata — ZZBS, ZZLXDM, ZZBH,
  issuer, holder, validity, version BBH and the KZ_* surface fields) and
  ``DocRoot``;
- ``Doc_0/Document.xml`` (CommonData: MaxUnitID, PageArea, PublicRes,
  DocumentRes; Pages), ``Doc_0/PublicRes.xml`` (the font, embedded as a
  Unicode subset in ``Doc_0/Res/``), ``Doc_0/DocumentRes.xml`` (images);
- ``Doc_0/Pages/Page_0/Content.xml``: text objects (``TextCode`` with per-glyph
  ``DeltaX``), the frame, table rules and QR code as path objects, and the
  optional seal image.

The seal itself is not drawn here: :mod:`signing.ofd_seal` adds the SM2
signature whose ``StampAnnot`` shows the seal picture in :data:`SEAL_BOX_MM`,
the area the PDF also keeps blank. ``seal_image`` is only for documents shown
by readers that ignore signatures.

Pure and deterministic: no clock (CreationDate is the issue date ZZBFRQ), the
DocID is derived from the identifier and version, fixed ZIP timestamps.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lxml import etree
from reportlab.graphics.barcode import qrencoder

from signing import ofd_font, render
from signing.errors import UnsealableDocument
from signing.ofd_package import NSMAP, q, to_xml, write_package
from signing.render import LicenseView

PT = 25.4 / 72
"""Millimetres per PDF point: the PDF layout constants are reused, converted."""
PAGE_W = round(render.PAGE_WIDTH * PT, 3)
PAGE_H = round(render.PAGE_HEIGHT * PT, 3)
_X1, _Y1, _X2, _Y2 = render.SEAL_BOX
SEAL_BOX_MM: tuple[float, float, float, float] = (
    round(_X1 * PT, 3),
    round((render.PAGE_HEIGHT - _Y2) * PT, 3),
    round((_X2 - _X1) * PT, 3),
    round((_Y2 - _Y1) * PT, 3),
)
"""(x, y, width, height) in mm, origin top-left: the area kept for the seal."""

METADATA_FIELDS = (
    "ZZBS", "ZZLXDM", "ZZMC", "ZZBH", "ZZBFJG", "ZZBFJGDM", "ZZBFJGQHDM", "ZZBFRQ",
    "ZZYXQQSRQ", "ZZYXQJZRQ", "CZZT", "CZZTDM", "CZZTDMLXDM", "CZZTDMLX", "CZZTQHDM",
    "ZZZT", "BBH",
)  # fmt: skip
"""E-license metadata (STANDARDS.md §1) copied into ``DocInfo/CustomDatas``, in this order."""

_DOC = "Doc_0"
_RED = "139 26 26"
_GREY = "85 85 85"
_LABEL_BG = "246 237 228"
_MARGIN = render.MARGIN * PT
_BODY = 11.5 * PT
_LEADING = 16 * PT
_PAD_Y, _PAD_X = 6 * PT, 8 * PT
_LABEL_W = 118 * PT
_TABLE_W = (render.PAGE_WIDTH - 2 * render.MARGIN - 48) * PT
_TABLE_X = (PAGE_W - _TABLE_W) / 2
_TABLE_TOP = (render.PAGE_HEIGHT - 712) * PT
_TABLE_BOTTOM = SEAL_BOX_MM[1] - 24 * PT


def _n(value: float) -> str:
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


@dataclass
class _Page:
    """Objects of the page being laid out; IDs are handed out in drawing order."""

    next_id: int
    objects: list[etree._Element] = field(default_factory=list)
    chars: set[str] = field(default_factory=set)

    def new_id(self) -> str:
        self.next_id += 1
        return str(self.next_id)

    def text(self, x: float, baseline: float, text: str, size: float, color: str = "0 0 0") -> None:
        """A one-line text object; ``baseline`` from the page top, in mm."""
        advances = ofd_font.advances_mm(text, size)
        width = sum(advances)
        obj = etree.Element(q("TextObject"), nsmap=NSMAP)
        obj.set("ID", self.new_id())
        obj.set("Boundary", f"{_n(x)} {_n(baseline - size)} {_n(width + 1)} {_n(size * 1.3)}")
        obj.set("Font", "FONT")  # replaced by the font's ID once known
        obj.set("Size", _n(size))
        etree.SubElement(obj, q("FillColor")).set("Value", color)
        code = etree.SubElement(obj, q("TextCode"))
        code.set("X", "0")
        code.set("Y", _n(size))
        if len(text) > 1:
            code.set("DeltaX", " ".join(_n(a) for a in advances[:-1]))
        code.text = text
        self.objects.append(obj)
        self.chars.update(text)

    def path(self, data: str, box: tuple[float, float, float, float], **style: str) -> None:
        obj = etree.Element(q("PathObject"), nsmap=NSMAP)
        obj.set("ID", self.new_id())
        obj.set("Boundary", " ".join(_n(v) for v in box))
        for name in ("LineWidth", "Stroke", "Fill"):
            if name in style:
                obj.set(name, style[name])
        if "fill" in style:
            etree.SubElement(obj, q("FillColor")).set("Value", style["fill"])
        if "stroke" in style:
            etree.SubElement(obj, q("StrokeColor")).set("Value", style["stroke"])
        etree.SubElement(obj, q("AbbreviatedData")).text = data
        self.objects.append(obj)


def _rect(x: float, y: float, w: float, h: float) -> str:
    return (
        f"M {_n(x)} {_n(y)} L {_n(x + w)} {_n(y)} L {_n(x + w)} {_n(y + h)} L {_n(x)} {_n(y + h)} C"
    )


def _wrap(text: str, size: float, width: float) -> list[str]:
    """Break ``text`` into lines no wider than ``width`` (CJK: at any character)."""
    lines: list[str] = []
    line = ""
    for char in text:
        if line and ofd_font.text_width_mm(line + char, size) > width:
            lines.append(line)
            line = ""
        line += char
    return [*lines, line] if line or not lines else lines


def _layout(view: LicenseView, page: _Page) -> None:
    full = (0.0, 0.0, PAGE_W, PAGE_H)
    inset = _MARGIN + 5 * PT
    frame = _rect(_MARGIN, _MARGIN, PAGE_W - 2 * _MARGIN, PAGE_H - 2 * _MARGIN)
    page.path(frame, full, LineWidth=_n(2.2 * PT), Stroke="true", Fill="false", stroke=_RED)
    inner = _rect(inset, inset, PAGE_W - 2 * inset, PAGE_H - 2 * inset)
    page.path(inner, full, LineWidth=_n(0.6 * PT), Stroke="true", Fill="false", stroke=_RED)

    size = 30 * PT
    title = " ".join(view.title) if len(view.title) <= 6 else view.title
    width = ofd_font.text_width_mm(title, size)
    page.text((PAGE_W - width) / 2, (render.PAGE_HEIGHT - 752) * PT, title, size, _RED)

    top = _TABLE_TOP
    rows = []
    for label, value in render._rows(view):  # the PDF's own field list and labels
        label_lines = _wrap(label, _BODY, _LABEL_W - 2 * _PAD_X)
        value_lines = _wrap(value, _BODY, _TABLE_W - _LABEL_W - 2 * _PAD_X)
        height = max(len(label_lines), len(value_lines)) * _LEADING + 2 * _PAD_Y
        rows.append((label_lines, value_lines, top, height))
        top += height
    if top > _TABLE_BOTTOM:
        raise UnsealableDocument(
            f"license {view.identifier or view.number}: {len(rows)} rows need "
            f"{top - _TABLE_TOP:.0f} mm, only {_TABLE_BOTTOM - _TABLE_TOP:.0f} mm fit above "
            "the seal area"
        )
    grid = " ".join(_rect(_TABLE_X, y, _LABEL_W, h) for _, _, y, h in rows)
    page.path(grid, full, Stroke="false", Fill="true", fill=_LABEL_BG)
    rules = _rect(_TABLE_X, _TABLE_TOP, _TABLE_W, top - _TABLE_TOP)
    rules += f" M {_n(_TABLE_X + _LABEL_W)} {_n(_TABLE_TOP)} L {_n(_TABLE_X + _LABEL_W)} {_n(top)}"
    rules += "".join(f" M {_n(_TABLE_X)} {_n(y)} L {_n(_TABLE_X + _TABLE_W)} {_n(y)}" for *_, y, _ in rows[1:])  # fmt: skip
    page.path(rules, full, LineWidth=_n(0.6 * PT), Stroke="true", Fill="false", stroke=_RED)
    for label_lines, value_lines, y, height in rows:
        for column_x, lines in ((_TABLE_X, label_lines), (_TABLE_X + _LABEL_W, value_lines)):
            block = len(lines) * _LEADING
            first = y + (height - block) / 2 + _LEADING * 0.75
            for i, line in enumerate(lines):
                page.text(column_x + _PAD_X, first + i * _LEADING, line, _BODY)

    _issuer(view, page)
    if view.verify_url:
        _qr(view.verify_url, page)


def _issuer(view: LicenseView, page: _Page) -> None:
    right = (_X1 - 14) * PT
    for dy, text in ((48, f"发证机关：{view.issuer_name}"), (76, f"发证日期：{view.issue_date}")):
        size = 13 * PT
        while size > 7 * PT and ofd_font.text_width_mm(text, size) > right - _MARGIN - 16 * PT:
            size -= 0.5 * PT
        width = ofd_font.text_width_mm(text, size)
        page.text(right - width, (render.PAGE_HEIGHT - (_Y2 - dy)) * PT, text, size)
    small = 8.5 * PT
    if view.seal_label:
        width = ofd_font.text_width_mm(view.seal_label, small)
        x = SEAL_BOX_MM[0] + (SEAL_BOX_MM[2] - width) / 2
        page.text(x, (render.PAGE_HEIGHT - (_Y1 - 12)) * PT, view.seal_label, small, "119 119 119")
    note = "本证照为电子证照，可凭证照标识核验真伪。"
    width = ofd_font.text_width_mm(note, small)
    page.text((PAGE_W - width) / 2, PAGE_H - _MARGIN - 16 * PT, note, small, _GREY)


def _qr(url: str, page: _Page) -> None:
    qr = qrencoder.QRCode(None, qrencoder.QRErrorCorrectLevel.M)
    qr.addData(url)
    qr.make()
    n = qr.getModuleCount()
    x_pt, y_pt, side_pt = render.QR_BOX
    x, top, side = x_pt * PT, (render.PAGE_HEIGHT - y_pt - side_pt) * PT, side_pt * PT
    module = side / (n + 8)  # 4 modules of quiet zone each side (ISO/IEC 18004)
    runs = []
    for r in range(n):
        c = 0
        while c < n:
            if not qr.isDark(r, c):
                c += 1
                continue
            start = c
            while c < n and qr.isDark(r, c):
                c += 1
            runs.append(_rect((start + 4) * module, (r + 4) * module, (c - start) * module, module))
    page.path(" ".join(runs), (x, top, side, side), Stroke="false", Fill="true", fill="0 0 0")
    caption = "扫码核验"
    width = ofd_font.text_width_mm(caption, 8 * PT)
    page.text(x + (side - width) / 2, (render.PAGE_HEIGHT - y_pt + 10) * PT, caption, 8 * PT, _GREY)


def _metadata(document: Mapping[str, Any]) -> list[tuple[str, str]]:
    out = [(k, str(document[k])) for k in METADATA_FIELDS if document.get(k) not in (None, "")]
    surface = document.get("KZ") or {}
    out += [(str(k), str(v)) for k, v in sorted(surface.items()) if v not in (None, "")]
    return out


def _ofd_xml(document: Mapping[str, Any], view: LicenseView) -> bytes:
    root = etree.Element(q("OFD"), nsmap=NSMAP, Version="1.0", DocType="OFD")
    body = etree.SubElement(root, q("DocBody"))
    info = etree.SubElement(body, q("DocInfo"))
    version = str(document.get("BBH") or "1")
    doc_id = uuid.uuid5(uuid.NAMESPACE_OID, f"{view.identifier}#{version}").hex
    etree.SubElement(info, q("DocID")).text = doc_id
    etree.SubElement(info, q("Title")).text = f"{view.title} {view.number}"
    etree.SubElement(info, q("Author")).text = view.issuer_name
    etree.SubElement(info, q("Subject")).text = view.identifier
    etree.SubElement(info, q("CreationDate")).text = str(document.get("ZZBFRQ") or "")[:10]
    etree.SubElement(info, q("Creator")).text = "ehub"
    custom = etree.SubElement(info, q("CustomDatas"))
    for name, value in _metadata(document):
        item = etree.SubElement(custom, q("CustomData"), Name=name)
        item.text = value
    etree.SubElement(body, q("DocRoot")).text = f"{_DOC}/Document.xml"
    return to_xml(root)


def write_license_ofd(
    document: Mapping[str, Any],
    *,
    verify_url: str = "",
    seal_label: str = "",
    seal_image: bytes | None = None,
) -> bytes:
    """The OFD package (ZIP bytes) of a license document in the hub's JSON form.

    ``verify_url`` and ``seal_label`` are as for
    :func:`ehub.templates.license_view`; ``seal_image`` (PNG) is drawn in the
    seal area. Raises :class:`UnsealableDocument` when the fields do not fit
    on one page above the seal area or no font can be embedded.
    """
    from ehub.templates import license_view

    view = license_view(dict(document), seal_label=seal_label, verify_url=verify_url)
    return write_view_ofd(view, _ofd_xml(document, view), seal_image=seal_image)


def write_view_ofd(view: LicenseView, ofd_xml: bytes, *, seal_image: bytes | None = None) -> bytes:
    """The OFD package of ``view`` with the given ``OFD.xml`` (see :func:`write_license_ofd`)."""
    font_id, page_id, layer_id = "1", "2", "3"
    page = _Page(next_id=int(layer_id))
    _layout(view, page)
    image_id = page.new_id() if seal_image is not None else None
    if seal_image is not None and image_id is not None:
        x, y, w, h = SEAL_BOX_MM
        img = etree.Element(q("ImageObject"), nsmap=NSMAP, ID=page.new_id())
        img.set("Boundary", f"{_n(x)} {_n(y)} {_n(w)} {_n(h)}")
        img.set("CTM", f"{_n(w)} 0 0 {_n(h)} 0 0")
        img.set("ResourceID", image_id)
        page.objects.append(img)

    content = etree.Element(q("Page"), nsmap=NSMAP)
    layer = etree.SubElement(etree.SubElement(content, q("Content")), q("Layer"), ID=layer_id)
    layer.set("Type", "Body")
    for obj in page.objects:
        if obj.get("Font") == "FONT":
            obj.set("Font", font_id)
        layer.append(obj)

    embedded = ofd_font.font_face() is not None
    res = etree.Element(q("Res"), nsmap=NSMAP, BaseLoc="Res")
    fonts = etree.SubElement(res, q("Fonts"))
    family = ofd_font.font_family()
    font = etree.SubElement(fonts, q("Font"), ID=font_id, FontName=family, FamilyName=family)
    if embedded:
        etree.SubElement(font, q("FontFile")).text = "font_1.ttf"

    document = etree.Element(q("Document"), nsmap=NSMAP)
    common = etree.SubElement(document, q("CommonData"))
    etree.SubElement(common, q("MaxUnitID")).text = str(page.next_id)
    area = etree.SubElement(common, q("PageArea"))
    etree.SubElement(area, q("PhysicalBox")).text = f"0 0 {_n(PAGE_W)} {_n(PAGE_H)}"
    etree.SubElement(common, q("PublicRes")).text = "PublicRes.xml"
    if image_id is not None:
        etree.SubElement(common, q("DocumentRes")).text = "DocumentRes.xml"
    pages = etree.SubElement(document, q("Pages"))
    etree.SubElement(pages, q("Page"), ID=page_id, BaseLoc="Pages/Page_0/Content.xml")

    entries = {
        "OFD.xml": ofd_xml,
        f"{_DOC}/Document.xml": to_xml(document),
        f"{_DOC}/PublicRes.xml": to_xml(res),
    }
    if image_id is not None and seal_image is not None:
        doc_res = etree.Element(q("Res"), nsmap=NSMAP, BaseLoc="Res")
        media = etree.SubElement(etree.SubElement(doc_res, q("MultiMedias")), q("MultiMedia"))
        media.set("ID", image_id)
        media.set("Type", "Image")
        media.set("Format", "PNG")
        etree.SubElement(media, q("MediaFile")).text = "seal_image.png"
        entries[f"{_DOC}/DocumentRes.xml"] = to_xml(doc_res)
    entries[f"{_DOC}/Pages/Page_0/Content.xml"] = to_xml(content)
    if embedded:
        entries[f"{_DOC}/Res/font_1.ttf"] = ofd_font.font_subset("".join(sorted(page.chars)))
    if seal_image is not None:
        entries[f"{_DOC}/Res/seal_image.png"] = seal_image
    return write_package(entries)


__all__ = ["METADATA_FIELDS", "SEAL_BOX_MM", "write_license_ofd", "write_view_ofd"]
