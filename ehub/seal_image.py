"""Development seal images: a red round seal with the department's name.

A real department's seal image comes from its registered physical seal; for
development every seal registered without an image gets one drawn here: a
red ring, a five-pointed star, the department name along the upper arc and
the seal type below the star (the layout of a Chinese official seal). The
image is a transparent PNG, ``SIZE_PX`` square, meant to be printed
``DIAMETER_MM`` wide (the size is a configurable default, *unconfirmed* for
e-license seals).
"""

from __future__ import annotations

import io
import logging
import math
import os

from PIL import Image, ImageDraw, ImageFont

log = logging.getLogger(__name__)

SIZE_PX = 400
DIAMETER_MM = 40
RED = (230, 0, 18, 255)
_FONT_ENV = "EHUB_CJK_FONT"
_FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/arphic-gbsn00lp/gbsn00lp.ttf",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
)


def _font(size: int) -> ImageFont.FreeTypeFont | None:
    given = os.environ.get(_FONT_ENV)
    for path in [given] if given else list(_FONT_CANDIDATES):
        if path and os.path.isfile(path):
            try:
                return ImageFont.truetype(path, size)
            except OSError:
                continue
    return None


def _star(cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    points = []
    for i in range(10):
        radius = r if i % 2 == 0 else r * 0.382
        angle = -math.pi / 2 + i * math.pi / 5
        points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
    return points


def render_seal_png(department: str, caption: str) -> bytes:
    """PNG bytes of a round red seal: ``department`` on the arc, ``caption`` below the star."""
    size = SIZE_PX
    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    c = size / 2
    ring = size * 0.035
    draw.ellipse(
        (ring / 2, ring / 2, size - ring / 2, size - ring / 2), outline=RED, width=int(ring)
    )
    draw.polygon(_star(c, c, size * 0.16), fill=RED)
    arc_font = _font(int(size * 0.105))
    caption_font = _font(int(size * 0.075))
    if arc_font is None or caption_font is None:
        log.warning(
            "no CJK font found (%s): the seal image has no text", ", ".join(_FONT_CANDIDATES)
        )
        return _png(img)
    _arc_text(img, department, arc_font, radius=size * 0.36)
    if caption:
        box = draw.textbbox((0, 0), caption, font=caption_font)
        width = box[2] - box[0]
        draw.text((c - width / 2 - box[0], size * 0.68), caption, font=caption_font, fill=RED)
    return _png(img)


def _arc_text(img: Image.Image, text: str, font: ImageFont.FreeTypeFont, radius: float) -> None:
    """Characters centred on an arc over the top, upright towards the centre."""
    if not text:
        return
    c = img.width / 2
    span = min(math.radians(250), math.radians(22) * len(text))
    step = span / max(len(text) - 1, 1)
    start = -math.pi / 2 - span / 2 if len(text) > 1 else -math.pi / 2
    cell = int(font.size * 1.4)
    for i, ch in enumerate(text):
        angle = start + i * step
        glyph = Image.new("RGBA", (cell, cell), (0, 0, 0, 0))
        gd = ImageDraw.Draw(glyph)
        box = gd.textbbox((0, 0), ch, font=font)
        gd.text(
            ((cell - (box[2] - box[0])) / 2 - box[0], (cell - (box[3] - box[1])) / 2 - box[1]),
            ch,
            font=font,
            fill=RED,
        )
        rotated = glyph.rotate(
            -math.degrees(angle + math.pi / 2), resample=Image.Resampling.BICUBIC
        )
        x = c + radius * math.cos(angle) - cell / 2
        y = c + radius * math.sin(angle) - cell / 2
        img.alpha_composite(rotated, (round(x), round(y)))


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    dpi = SIZE_PX / (DIAMETER_MM / 25.4)
    img.save(buf, format="PNG", dpi=(dpi, dpi))
    return buf.getvalue()
