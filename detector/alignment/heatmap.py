"""A check's heatmap drawn over its photo: red where a region differs from the reference, the most
different region boxed. Heat is in fixed units (see ``verify``), so a genuine photo stays clear."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

from detector.images import load_image
from detector.limits import Limits

_MAX_SIDE = 1024  # the rendering's longer side
_OPACITY = 0.6  # at full heat


def render_heatmap(photo: bytes, heatmap: list[list[float]], box: list[int] | None, *, limits: Limits = Limits()) -> bytes:
    """PNG bytes: the photo (at most ``_MAX_SIDE`` on its longer side) with the heat overlay and box."""
    picture = load_image(photo, limits=limits, name="photo")
    scale = min(1.0, _MAX_SIDE / max(picture.size))
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    base = picture.resize(size, Image.Resampling.BILINEAR).convert("RGBA")
    heat = np.clip(np.asarray(heatmap, np.float32), 0.0, 1.0)
    alpha = Image.fromarray((heat * 255 * _OPACITY).astype(np.uint8), "L").resize(size, Image.Resampling.BILINEAR)
    red = Image.new("RGBA", size, (255, 0, 0, 0))
    red.putalpha(alpha)
    out = Image.alpha_composite(base, red)
    if box is not None:
        x0, y0, x1, y1 = (round(v * scale) for v in box)
        ImageDraw.Draw(out).rectangle((x0, y0, x1, y1), outline=(255, 220, 0, 255), width=max(2, round(max(size) / 300)))
    buffer = io.BytesIO()
    out.convert("RGB").save(buffer, "PNG")
    return buffer.getvalue()
