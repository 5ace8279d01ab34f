"""Invented brands: logo from geometric primitives, wordmark font, palette, product, colourways."""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

PRODUCT_TYPES = ("sneaker", "handbag", "bottle", "watch", "box", "tshirt", "headphones")
SHAPES = ("disc", "ring", "square", "triangle", "star", "chevron", "bar", "diamond")
TEXTURES = ("plain", "weave", "grain", "knit")
HARDWARE = {"gold": (212, 175, 55), "silver": (192, 192, 200), "black": (40, 40, 40), "copper": (184, 115, 51)}
FONT_FILES = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf", "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "STIXGeneral.ttf", "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf", "cmr10.ttf", "cmss10.ttf", "cmtt10.ttf", "cmb10.ttf", "cmti10.ttf",
)
CONSONANTS = "bcdfgklmnprstvxz"
VOWELS = "aeiou"

RGB = tuple[int, int, int]


def font_path(name: str) -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name


@dataclass(frozen=True)
class Primitive:
    shape: str
    x: float  # centre in the logo's unit square
    y: float
    size: float
    rotation: float  # degrees
    colour: RGB


@dataclass(frozen=True)
class Look:
    """Everything that decides how one product photo's item looks."""

    product_type: str
    body: RGB
    trim: RGB
    logo: tuple[Primitive, ...]
    wordmark: str
    font: str
    wordmark_colour: RGB
    logo_dx: float = 0.0  # offset from the design position, in product widths
    logo_dy: float = 0.0
    logo_scale: float = 1.0
    print_damage: float = 0.0  # 0 crisp .. 1 badly printed
    texture: str = "plain"
    stitch_spacing: int = 8
    stitch_colour: RGB = (240, 240, 240)
    hardware: str = "silver"

    def with_(self, **changes) -> "Look":
        return replace(self, **changes)


@dataclass(frozen=True)
class Brand:
    slug: str
    name: str
    product_type: str
    colourways: tuple[tuple[RGB, RGB], ...]  # (body, trim) pairs
    base: Look

    def look(self, colourway: int) -> Look:
        body, trim = self.colourways[colourway % len(self.colourways)]
        return self.base.with_(body=body, trim=trim)


def _hsv(h: float, s: float, v: float) -> RGB:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0), 1), min(max(v, 0), 1))
    return (int(r * 255), int(g * 255), int(b * 255))


def brand_name(rng: np.random.Generator) -> str:
    length = int(rng.integers(5, 9))
    return "".join(rng.choice(list(CONSONANTS if i % 2 == 0 else VOWELS)) for i in range(length)).capitalize()


def random_logo(rng: np.random.Generator, palette: list[RGB]) -> tuple[Primitive, ...]:
    count = int(rng.integers(2, 5))
    return tuple(
        Primitive(
            shape=str(rng.choice(SHAPES)),
            x=float(rng.uniform(0.3, 0.7)), y=float(rng.uniform(0.3, 0.7)),
            size=float(rng.uniform(0.35, 0.7)), rotation=float(rng.uniform(0, 360)),
            colour=palette[int(rng.integers(0, len(palette)))],
        )
        for _ in range(count)
    )


def make_brand(rng: np.random.Generator, index: int, *, product_type: str | None = None) -> Brand:
    name = brand_name(rng)
    hue = float(rng.uniform(0, 1))
    palette = [_hsv(hue + float(rng.uniform(-0.08, 0.08)), rng.uniform(0.6, 1), rng.uniform(0.5, 0.95)),
               _hsv(hue + 0.5, rng.uniform(0.5, 1), rng.uniform(0.4, 0.9)),
               _hsv(hue + float(rng.uniform(0.2, 0.35)), rng.uniform(0.3, 0.9), rng.uniform(0.2, 0.6))]
    colourways = []
    for _ in range(int(rng.integers(3, 5))):
        body = _hsv(rng.uniform(0, 1), rng.uniform(0.0, 0.7), rng.uniform(0.35, 0.97))
        trim = _hsv(rng.uniform(0, 1), rng.uniform(0.0, 0.6), rng.uniform(0.2, 0.95))
        colourways.append((body, trim))
    product = product_type or PRODUCT_TYPES[index % len(PRODUCT_TYPES)]
    base = Look(
        product_type=product, body=colourways[0][0], trim=colourways[0][1],
        logo=random_logo(rng, palette), wordmark=name.upper() if rng.random() < 0.5 else name,
        font=str(rng.choice(FONT_FILES)), wordmark_colour=palette[int(rng.integers(0, 3))],
        texture=str(rng.choice(TEXTURES)), stitch_spacing=int(rng.integers(5, 12)),
        stitch_colour=_hsv(rng.uniform(0, 1), rng.uniform(0, 0.5), rng.uniform(0.6, 1.0)),
        hardware=str(rng.choice(list(HARDWARE))),
    )
    slug = f"{name.lower()}-{index:03d}"
    return Brand(slug=slug, name=name, product_type=product, colourways=tuple(colourways), base=base)
