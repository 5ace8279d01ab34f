"""Studio reference shots and phone-style listing photos of a rendered product.

Listing photos of genuine and counterfeit items go through the same nuisance distribution:
background, perspective, rotation, crop, lighting, colour temperature, blur, noise, JPEG 55-95,
occlusion. The same draws without the nuisances give the photo's pose alone, on a studio background:
a reference at exactly the listing photo's pose (the aligned-verification ceiling study).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

STUDIO_GREY = 245  # the plain background of a photo drawn without nuisances


def _encode_jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=int(quality))
    return buffer.getvalue()


def studio_shot(product: Image.Image, rng: np.random.Generator, size: int) -> bytes:
    grey = int(rng.integers(238, 256))
    canvas = Image.new("RGB", (size, size), (grey, grey, grey))
    scale = rng.uniform(0.85, 0.95)
    item = product.resize((int(size * scale), int(size * scale)), Image.Resampling.LANCZOS)
    # references come from several angles: a mild perspective, a small turn
    j = item.width * rng.uniform(0.0, 0.06)
    corners = [(0, 0), (item.width, 0), (item.width, item.height), (0, item.height)]
    moved = [(x + rng.uniform(-j, j), y + rng.uniform(-j, j)) for x, y in corners]
    item = item.transform(item.size, Image.Transform.PERSPECTIVE, _perspective_coeffs(corners, moved), Image.Resampling.BICUBIC)
    item = item.rotate(rng.uniform(-4, 4), resample=Image.Resampling.BICUBIC, expand=False)
    shadow = Image.new("RGBA", item.size, (0, 0, 0, 0))
    shadow.putalpha(item.getchannel("A").point(lambda a: a * 0.25).filter(ImageFilter.GaussianBlur(size / 60)))
    x, y = (size - item.width) // 2, (size - item.height) // 2
    canvas.paste(shadow, (x + size // 80, y + size // 60), shadow)
    canvas.paste(item, (x, y), item)
    return _encode_jpeg(canvas, rng.integers(90, 96))


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    kind = rng.integers(0, 4)
    base = rng.integers(40, 230, 3).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    if kind == 0:  # gradient wall
        other = rng.integers(40, 230, 3).astype(np.float32)
        t = (xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1))[..., None]
        t = (t - t.min()) / (np.ptp(t) + 1e-6)
        array = base * (1 - t) + other * t
    elif kind == 1:  # wood-like stripes
        phase = np.sin((yy * rng.uniform(10, 40) + np.sin(xx * rng.uniform(2, 8)) * 0.8) * np.pi)
        array = base * (0.85 + 0.15 * phase[..., None])
    elif kind == 2:  # fabric noise
        noise = rng.normal(0, 1, (size // 8, size // 8))
        noise = np.asarray(Image.fromarray(((noise + 3) * 40).clip(0, 255).astype(np.uint8)).resize((size, size)), np.float32)
        array = base * (0.8 + 0.4 * noise[..., None] / 255)
    else:  # table and wall
        edge = rng.uniform(0.3, 0.7)
        other = rng.integers(40, 230, 3).astype(np.float32)
        array = np.where((yy > edge)[..., None], other, base) * np.ones((1, 1, 3))
    image = Image.fromarray(np.clip(array, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(0, 4))):  # clutter
        x, y = rng.integers(0, size, 2)
        r = rng.integers(size // 16, size // 5)
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        if rng.random() < 0.5:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
        else:
            draw.rectangle((x - r, y - r // 2, x + r, y + r // 2), fill=colour)
    return image


def _perspective_coeffs(src, dst):
    matrix = []
    for (x, y), (u, v) in zip(dst, src):
        matrix.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        matrix.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    a = np.array(matrix, dtype=np.float64)
    b = np.array(src, dtype=np.float64).reshape(8)
    return np.linalg.solve(a, b).tolist()


def _occluder(rng: np.random.Generator, size: int) -> tuple[tuple[float, float, float, float], tuple[int, ...]] | None:
    """A finger or an object at the edge (35% of photos): its ellipse and colour, or None."""
    if rng.random() >= 0.35:
        return None
    side = rng.integers(0, 4)
    w, h = size * rng.uniform(0.12, 0.25), size * rng.uniform(0.25, 0.45)
    # both lists are built whole: every uniform is drawn whichever side is taken
    cx = [rng.uniform(0.2, 0.8) * size, size, rng.uniform(0.2, 0.8) * size, 0][side]
    cy = [size, rng.uniform(0.2, 0.8) * size, 0, rng.uniform(0.2, 0.8) * size][side]
    skin = tuple(int(c) for c in rng.choice([[224, 172, 140], [198, 134, 66], [141, 85, 36], [255, 219, 172]]))
    return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), skin


def phone_photo(product: Image.Image, rng: np.random.Generator, size: int, *, nuisances: bool = True) -> bytes:
    """A listing photo of ``product``. With ``nuisances=False`` the same draws are made (so the pose is
    the one the listing photo gets from the same generator state), but only the pose is applied (size,
    perspective, turn, position, crop), on a plain studio background, encoded at JPEG 95."""
    canvas = _background(rng, size)  # drawn either way: the pose's draws follow the background's
    if not nuisances:
        canvas = Image.new("RGB", (size, size), (STUDIO_GREY,) * 3)
    scale = rng.uniform(0.6, 1.0)
    item_size = int(size * scale)
    item = product.resize((item_size, item_size), Image.Resampling.BICUBIC)
    # perspective: jitter the corners
    j = item_size * rng.uniform(0.0, 0.14)
    corners = [(0, 0), (item_size, 0), (item_size, item_size), (0, item_size)]
    moved = [(x + rng.uniform(-j, j), y + rng.uniform(-j, j)) for x, y in corners]
    item = item.transform(item.size, Image.Transform.PERSPECTIVE, _perspective_coeffs(corners, moved), Image.Resampling.BICUBIC)
    item = item.rotate(rng.uniform(-25, 25), resample=Image.Resampling.BICUBIC, expand=True)
    max_off = max(1, int(size * 0.12))
    x = (size - item.width) // 2 + int(rng.integers(-max_off, max_off + 1))
    y = (size - item.height) // 2 + int(rng.integers(-max_off, max_off + 1))
    canvas.paste(item, (x, y), item)
    occluder = _occluder(rng, size)
    if occluder is not None and nuisances:
        ImageDraw.Draw(canvas).ellipse(occluder[0], fill=occluder[1])
    if rng.random() < 0.3:  # crop and re-frame
        c = int(size * rng.uniform(0.05, 0.15))
        left, top = int(rng.integers(0, c + 1)), int(rng.integers(0, c + 1))
        canvas = canvas.crop((left, top, left + size - c, top + size - c)).resize((size, size), Image.Resampling.BICUBIC)
    if not nuisances:
        return _encode_jpeg(canvas, 95)
    array = np.asarray(canvas, np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    light = rng.uniform(0.65, 1.15) + rng.uniform(-0.3, 0.3) * (xx - 0.5) + rng.uniform(-0.3, 0.3) * (yy - 0.5)
    temperature = rng.uniform(-0.12, 0.12)
    array = array * light[..., None] * np.array([1 + temperature, 1.0, 1 - temperature], np.float32)
    contrast = rng.uniform(0.8, 1.2)
    array = (array - 128) * contrast + 128
    canvas = Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))
    if rng.random() < 0.6:
        canvas = canvas.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.8) * size / 256))
    noisy = np.asarray(canvas, np.float32) + rng.normal(0, rng.uniform(0, 10), (size, size, 3))
    canvas = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
    return _encode_jpeg(canvas, rng.integers(55, 96))
