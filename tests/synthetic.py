"""Small generated product photos for tests: each brand has a distinct look, each photo jitters."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

STYLES = {
    "acme": {"colour": (200, 30, 30), "shape": "disc", "stripe": (20, 20, 20)},
    "zenit": {"colour": (30, 60, 200), "shape": "triangle", "stripe": (230, 200, 20)},
    "orbit": {"colour": (30, 150, 60), "shape": "ring", "stripe": (120, 60, 160)},
}


def product_image(brand: str, seed: int, size: int = 160) -> Image.Image:
    style = STYLES[brand]
    rng = np.random.default_rng(seed)
    background = tuple(int(v) for v in rng.integers(215, 255, 3))
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    cx, cy = size / 2 + rng.uniform(-8, 8), size / 2 + rng.uniform(-8, 8)
    r = size * rng.uniform(0.26, 0.32)
    box = (cx - r, cy - r, cx + r, cy + r)
    if style["shape"] == "disc":
        draw.ellipse(box, fill=style["colour"])
    elif style["shape"] == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=style["colour"])
    else:
        draw.ellipse(box, outline=style["colour"], width=int(r / 3))
    for i in range(3):
        y = int(size * 0.08 + i * 7)
        draw.rectangle((int(size * 0.1), y, int(size * 0.9), y + 3), fill=style["stripe"])
    array = np.asarray(image, np.float32) + rng.normal(0, 4, (size, size, 3))
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))


def encode(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def product_photo(brand: str, seed: int, size: int = 160, fmt: str = "PNG") -> bytes:
    return encode(product_image(brand, seed, size), fmt)
