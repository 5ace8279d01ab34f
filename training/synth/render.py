"""Draw a ``Look`` as an RGBA product cut-out (transparent background), supersampled."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont

from training.synth.brand import HARDWARE, Look, Primitive, font_path

SUPERSAMPLE = 2


def _rotate(points, cx, cy, degrees):
    a = math.radians(degrees)
    c, s = math.cos(a), math.sin(a)
    return [(cx + (x - cx) * c - (y - cy) * s, cy + (x - cx) * s + (y - cy) * c) for x, y in points]


def _shape_points(shape: str, cx: float, cy: float, r: float, rotation: float):
    if shape in ("square", "diamond"):
        pts = [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
        return _rotate(pts, cx, cy, rotation + (45 if shape == "diamond" else 0))
    if shape == "triangle":
        pts = [(cx + r * math.cos(math.radians(a)), cy + r * math.sin(math.radians(a))) for a in (-90, 30, 150)]
        return _rotate(pts, cx, cy, rotation)
    if shape == "star":
        pts = []
        for i in range(10):
            radius = r if i % 2 == 0 else r * 0.45
            a = math.radians(-90 + 36 * i)
            pts.append((cx + radius * math.cos(a), cy + radius * math.sin(a)))
        return _rotate(pts, cx, cy, rotation)
    if shape == "chevron":
        pts = [(cx - r, cy - r * 0.2), (cx, cy - r * 0.9), (cx + r, cy - r * 0.2), (cx + r, cy + r * 0.3),
               (cx, cy - r * 0.4), (cx - r, cy + r * 0.3)]
        return _rotate(pts, cx, cy, rotation)
    if shape == "bar":
        pts = [(cx - r, cy - r * 0.25), (cx + r, cy - r * 0.25), (cx + r, cy + r * 0.25), (cx - r, cy + r * 0.25)]
        return _rotate(pts, cx, cy, rotation)
    return None


def render_logo(primitives: tuple[Primitive, ...], size: int) -> Image.Image:
    logo = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(logo)
    for p in primitives:
        cx, cy, r = p.x * size, p.y * size, p.size * size / 2
        points = _shape_points(p.shape, cx, cy, r, p.rotation)
        if points is not None:
            draw.polygon(points, fill=p.colour + (255,))
        elif p.shape == "ring":
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=p.colour + (255,), width=max(2, int(r * 0.35)))
        else:
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=p.colour + (255,))
    return logo


@lru_cache(maxsize=64)
def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(font_path(name)), size)


def render_wordmark(text: str, font: str, colour, height: int) -> Image.Image:
    face = _font(font, max(6, height))
    left, top, right, bottom = face.getbbox(text)
    image = Image.new("RGBA", (max(1, right - left + 4), max(1, bottom - top + 4)), (0, 0, 0, 0))
    ImageDraw.Draw(image).text((2 - left, 2 - top), text, font=face, fill=tuple(colour) + (255,))
    return image


def damage_print(image: Image.Image, amount: float, rng: np.random.Generator) -> Image.Image:
    """Cheap printing: lost resolution, ink bleed, colour misregistration, missing ink."""
    if amount <= 0:
        return image
    w, h = image.size
    factor = 1 + 5 * amount
    small = image.resize((max(2, int(w / factor)), max(2, int(h / factor))), Image.Resampling.NEAREST)
    image = small.resize((w, h), Image.Resampling.NEAREST).filter(ImageFilter.GaussianBlur(1.5 * amount * w / 100))
    r, g, b, a = image.split()
    shift = int(round(4 * amount * w / 100))
    r = ImageChops.offset(r, shift, 0)
    b = ImageChops.offset(b, -shift, shift)
    holes = (rng.random((h, w)) > 0.35 * amount).astype(np.uint8)
    a = Image.fromarray((np.asarray(a) * holes).astype(np.uint8))
    return Image.merge("RGBA", (r, g, b, a))


def _texture_overlay(texture: str, size: int, mask: Image.Image) -> Image.Image | None:
    if texture == "plain":
        return None
    rng = np.random.default_rng({"weave": 1, "grain": 2, "knit": 3}[texture])  # one fixed pattern per texture
    overlay = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    step = max(4, size // 40)
    if texture == "weave":
        for i in range(-size, 2 * size, step):
            draw.line((i, 0, i + size, size), fill=(0, 0, 0, 60), width=max(1, step // 4))
            draw.line((i, size, i + size, 0), fill=(255, 255, 255, 45), width=max(1, step // 4))
    elif texture == "grain":
        noise = rng.random((size // 4, size // 4))
        grain = Image.fromarray((noise * 255).astype(np.uint8)).resize((size, size), Image.Resampling.BICUBIC)
        alpha = Image.fromarray((np.abs(np.asarray(grain, np.float32) - 128) * 0.9).astype(np.uint8))
        overlay = Image.merge("RGBA", (Image.new("L", (size, size), 0),) * 3 + (alpha,))
    elif texture == "knit":
        for y in range(0, size, step):
            for x in range(0, size, step):
                draw.line((x, y, x + step / 2, y + step), fill=(0, 0, 0, 70), width=max(1, step // 5))
                draw.line((x + step, y, x + step / 2, y + step), fill=(0, 0, 0, 70), width=max(1, step // 5))
    cut = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    cut.paste(overlay, (0, 0), ImageChops.multiply(overlay.getchannel("A"), mask))
    return cut


def _dashed(draw: ImageDraw.ImageDraw, points, spacing: float, colour, width: int) -> None:
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        length = math.hypot(x1 - x0, y1 - y0)
        steps = int(length // spacing)
        for i in range(0, steps, 2):
            t0, t1 = i * spacing / length, min(1.0, (i + 1) * spacing / length)
            draw.line((x0 + (x1 - x0) * t0, y0 + (y1 - y0) * t0, x0 + (x1 - x0) * t1, y0 + (y1 - y0) * t1),
                      fill=tuple(colour) + (255,), width=width)


def _hardware_dot(draw, x, y, r, colour) -> None:
    draw.ellipse((x - r, y - r, x + r, y + r), fill=colour + (255,), outline=(30, 30, 30, 255), width=max(1, int(r / 4)))
    draw.ellipse((x - r * 0.4, y - r * 0.6, x + r * 0.1, y - r * 0.1), fill=(255, 255, 255, 170))


# Each product: body polygons, trim polygons, logo (x, y, size), wordmark (x, y, height), stitch path, hardware.
def _geometry(kind: str):
    if kind == "sneaker":
        return dict(body=[[(.1, .62), (.15, .42), (.4, .3), (.55, .32), (.7, .45), (.9, .52), (.92, .62)]],
                    trim=[[(.07, .62), (.93, .62), (.93, .72), (.07, .72)], [(.4, .3), (.55, .32), (.6, .44), (.44, .42)]],
                    logo=(.62, .5, .2), word=(.5, .67, .045), stitch=[(.12, .59), (.9, .59)],
                    hardware=[(.45 + .04 * i, .35 + .025 * i, .012) for i in range(4)])
    if kind == "handbag":
        return dict(body=[[(.18, .38), (.82, .38), (.9, .85), (.1, .85)]],
                    trim=[[(.18, .38), (.82, .38), (.78, .52), (.22, .52)]],
                    arc=(.3, .12, .7, .58), logo=(.5, .66, .22), word=(.5, .79, .045),
                    stitch=[(.2, .42), (.8, .42), (.86, .81), (.14, .81), (.2, .42)], hardware=[(.5, .52, .03)])
    if kind == "bottle":
        return dict(body=[[(.3, .32), (.7, .32), (.7, .9), (.3, .9)], [(.42, .16), (.58, .16), (.58, .33), (.42, .33)]],
                    trim=[[(.3, .45), (.7, .45), (.7, .8), (.3, .8)]],
                    logo=(.5, .57, .17), word=(.5, .72, .045), stitch=[(.32, .47), (.68, .47), (.68, .78), (.32, .78), (.32, .47)],
                    hardware=[], cap=(.4, .08, .6, .17))
    if kind == "watch":
        return dict(body=[], trim=[[(.4, .02), (.6, .02), (.6, .98), (.4, .98)]], dial=(.5, .5, .25, .21),
                    logo=(.5, .4, .14), word=(.5, .59, .032), stitch=[(.42, .05), (.42, .25)], stitch2=[(.58, .05), (.58, .25)],
                    hardware=[(.76, .5, .025)])
    if kind == "box":
        return dict(body=[[(.15, .32), (.85, .32), (.85, .88), (.15, .88)]],
                    trim=[[(.15, .32), (.85, .32), (.85, .42), (.15, .42)], [(.15, .32), (.28, .2), (.95, .2), (.85, .32)]],
                    logo=(.5, .58, .22), word=(.5, .77, .055), stitch=[(.18, .45), (.82, .45), (.82, .85), (.18, .85), (.18, .45)],
                    hardware=[(.5, .37, .02)])
    if kind == "tshirt":
        return dict(body=[[(.3, .15), (.42, .12), (.58, .12), (.7, .15), (.92, .3), (.82, .42), (.72, .36), (.72, .9),
                           (.28, .9), (.28, .36), (.18, .42), (.08, .3)]],
                    trim=[[(.42, .12), (.58, .12), (.55, .19), (.45, .19)]],
                    logo=(.5, .4, .18), word=(.5, .56, .045), stitch=[(.3, .86), (.7, .86)], stitch2=[(.12, .33), (.27, .41)],
                    hardware=[])
    # headphones
    return dict(body=[], cups=((.22, .62, .13, .17), (.78, .62, .13, .17)), band=(.2, .1, .8, .75),
                trim=[], logo=(.78, .62, .15), word=(.5, .2, .035), stitch=[(.16, .5), (.16, .74)],
                stitch2=[(.84, .5), (.84, .74)], hardware=[(.22, .42, .02), (.78, .42, .02)])


def render_product(look: Look, size: int, rng: np.random.Generator) -> Image.Image:
    """The item alone on a transparent background, ``size`` x ``size`` pixels."""
    S = size * SUPERSAMPLE
    g = _geometry(look.product_type)
    image = Image.new("RGBA", (S, S), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    body_mask = Image.new("L", (S, S), 0)
    mask_draw = ImageDraw.Draw(body_mask)
    px = lambda pts: [(x * S, y * S) for x, y in pts]
    hardware = HARDWARE[look.hardware]
    outline = tuple(max(0, int(c * 0.55)) for c in look.body) + (255,)

    if "arc" in g:
        x0, y0, x1, y1 = g["arc"]
        draw.arc((x0 * S, y0 * S, x1 * S, y1 * S), 180, 360, fill=look.trim + (255,), width=int(0.05 * S))
    if "band" in g:
        x0, y0, x1, y1 = g["band"]
        draw.arc((x0 * S, y0 * S, x1 * S, y1 * S), 180, 360, fill=look.trim + (255,), width=int(0.06 * S))
    for poly in g["body"]:
        draw.polygon(px(poly), fill=look.body + (255,), outline=outline, width=SUPERSAMPLE * 2)
        mask_draw.polygon(px(poly), fill=255)
    if "cups" in g:
        for cx, cy, rx, ry in g["cups"]:
            box = ((cx - rx) * S, (cy - ry) * S, (cx + rx) * S, (cy + ry) * S)
            draw.ellipse(box, fill=look.body + (255,), outline=outline, width=SUPERSAMPLE * 2)
            mask_draw.ellipse(box, fill=255)
    if "dial" in g:
        cx, cy, r_case, r_dial = g["dial"]
        for poly in g["trim"]:
            draw.polygon(px(poly), fill=look.trim + (255,))
            mask_draw.polygon(px(poly), fill=255)
        draw.ellipse(((cx - r_case) * S, (cy - r_case) * S, (cx + r_case) * S, (cy + r_case) * S), fill=hardware + (255,))
        draw.ellipse(((cx - r_dial) * S, (cy - r_dial) * S, (cx + r_dial) * S, (cy + r_dial) * S), fill=look.body + (255,))
        for hour in range(12):
            a = math.radians(hour * 30)
            r0, r1 = r_dial * 0.82 * S, r_dial * 0.95 * S
            draw.line((cx * S + r0 * math.sin(a), cy * S - r0 * math.cos(a), cx * S + r1 * math.sin(a), cy * S - r1 * math.cos(a)),
                      fill=(30, 30, 30, 255), width=SUPERSAMPLE * 2)
    else:
        for poly in g["trim"]:
            draw.polygon(px(poly), fill=look.trim + (255,), outline=outline, width=SUPERSAMPLE)
    if "cap" in g:
        x0, y0, x1, y1 = g["cap"]
        draw.rectangle((x0 * S, y0 * S, x1 * S, y1 * S), fill=hardware + (255,), outline=(30, 30, 30, 255), width=SUPERSAMPLE)

    texture = _texture_overlay(look.texture, S, body_mask)
    if texture is not None:
        image.alpha_composite(texture)
    stitch_width = max(1, SUPERSAMPLE)
    for key in ("stitch", "stitch2"):
        if key in g:
            _dashed(draw, px(g[key]), look.stitch_spacing * SUPERSAMPLE * size / 256, look.stitch_colour, stitch_width)
    for x, y, r in g["hardware"]:
        _hardware_dot(draw, x * S, y * S, r * S, hardware)

    lx, ly, lsize = g["logo"]
    logo_px = max(8, int(lsize * look.logo_scale * S))
    logo = damage_print(render_logo(look.logo, logo_px), look.print_damage, rng)
    cx, cy = (lx + look.logo_dx) * S, (ly + look.logo_dy) * S
    image.alpha_composite(logo, (int(cx - logo_px / 2), int(cy - logo_px / 2)))
    wx, wy, wh = g["word"]
    word = render_wordmark(look.wordmark, look.font, look.wordmark_colour, int(wh * S))
    max_width = int(0.6 * S)
    if word.width > max_width:
        word = word.resize((max_width, max(1, int(word.height * max_width / word.width))), Image.Resampling.LANCZOS)
    word = damage_print(word, look.print_damage * 0.7, rng)
    image.alpha_composite(word, (int(wx * S - word.width / 2), int(wy * S - word.height / 2)))
    return image.resize((size, size), Image.Resampling.LANCZOS)
