"""A detailed product (emblem, text, pattern) as a studio reference and as listing photos taken at an
angle, under other light, on another background; optionally with a tampered emblem."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

SIZE = 480
EMBLEM = (70, 80, 190, 200)  # x0, y0, x1, y1 of the emblem on the studio shot


COLOURWAYS = ((40, 70, 150), (40, 90, 110))  # the detailed product's body colours: blue, teal


def studio_product(seed: int = 0, *, tampered: bool = False, colourway: int = 0) -> Image.Image:
    """The product on a plain light background; ``tampered`` redraws its emblem."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (SIZE, SIZE), (246, 246, 246))
    draw = ImageDraw.Draw(image)
    draw.rectangle((50, 60, 430, 420), fill=COLOURWAYS[colourway])
    for _ in range(60):  # a printed pattern: detail for keypoints
        x, y = rng.integers(220, 410), rng.integers(80, 400)
        r = int(rng.integers(3, 9))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(int(c) for c in rng.integers(120, 255, 3)))
    x0, y0, x1, y1 = EMBLEM
    if tampered:
        draw.rectangle((x0, y0, x1, y1), fill=(200, 60, 40))
        draw.ellipse((x0 + 30, y0 + 30, x1 - 30, y1 - 30), fill=(250, 250, 250))
    else:
        draw.polygon([(x0 + 60, y0), (x1, y1), (x0, y1)], fill=(240, 200, 30))
        draw.ellipse((x0 + 40, y0 + 55, x0 + 80, y0 + 95), fill=(30, 30, 30))
    font = ImageFont.load_default(size=28)
    for i, word in enumerate(("GENUINE", "ACME CO", "No 5 1921")):
        draw.text((70, 250 + 45 * i), word, fill=(250, 250, 250), font=font)
    return image


def listing_photo(product: Image.Image, seed: int) -> tuple[Image.Image, np.ndarray]:
    """``product`` photographed at an angle, under warmer uneven light, on a textured background;
    and the homography from the studio shot to the photo."""
    rng = np.random.default_rng(seed)
    source = np.asarray(product, np.float32)
    corners = np.float32([[0, 0], [SIZE, 0], [SIZE, SIZE], [0, SIZE]])
    moved = corners + rng.uniform(-40, 40, (4, 2)).astype(np.float32)
    angle = np.deg2rad(rng.uniform(-20, 20))
    centre = np.float32([SIZE / 2, SIZE / 2])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]], np.float32)
    moved = (moved - centre) @ rotation.T * 0.85 + centre
    homography = cv2.getPerspectiveTransform(corners, moved.astype(np.float32))
    background = rng.integers(60, 200, 3).astype(np.float32) + rng.normal(0, 12, (SIZE, SIZE, 1)).astype(np.float32)
    # the studio backdrop is not part of the product: only the product's own pixels are photographed
    backdrop = np.abs(source - 246).max(axis=2) > 12
    warped = cv2.warpPerspective(source, homography, (SIZE, SIZE), flags=cv2.INTER_LINEAR)
    keep = cv2.warpPerspective(backdrop.astype(np.uint8), homography, (SIZE, SIZE), flags=cv2.INTER_NEAREST) > 0
    photo = np.where(keep[..., None], warped, background)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    light = (0.85 + 0.2 * xx)[..., None] * np.float32([0.9, 1.0, 1.1])  # RGB: warmer, brighter to the right
    photo = photo * light + rng.normal(0, 2, photo.shape)
    return Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8)), homography


def other_product(seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed + 100)
    image = Image.new("RGB", (SIZE, SIZE), (246, 246, 246))
    draw = ImageDraw.Draw(image)
    draw.ellipse((60, 60, 420, 420), fill=(150, 40, 60))
    for _ in range(80):
        x, y = rng.integers(100, 380, 2)
        draw.rectangle((x, y, x + int(rng.integers(4, 14)), y + int(rng.integers(4, 14))),
                       fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    return image


PRODUCT_CORNERS = ((50, 110), (430, 110), (430, 390), (50, 390))  # the plain product's bounding box


# the plain product's body colours: pink, salmon, charcoal, lavender
PLAIN_COLOURWAYS = ((190, 80, 120), (200, 110, 110), (60, 60, 70), (120, 120, 200))


def plain_product(*, tampered: bool = False, colourway: int = 0) -> Image.Image:
    """A plain product (flat colours, no pattern or text: few repeatable keypoints) on a studio
    background; ``tampered`` recolours its emblem."""
    image = Image.new("RGB", (SIZE, SIZE), (244, 244, 244))
    draw = ImageDraw.Draw(image)
    draw.polygon([(60, 330), (110, 150), (250, 110), (420, 250), (420, 330)], fill=PLAIN_COLOURWAYS[colourway])
    x0, y0, x1, y1 = PRODUCT_CORNERS[0] + PRODUCT_CORNERS[2]
    draw.rectangle((x0, 330, x1, y1), fill=(70, 70, 80))
    x0, y0, x1, y1 = EMBLEM
    draw.polygon([(x0 + 60, y0 + 60), (x1 + 60, y1 + 60), (x0 + 60, y1 + 60)], fill=(60, 160, 70) if tampered else (220, 180, 40))
    return image


def restaged(product: Image.Image, degrees: float, shift: tuple[float, float], zoom: float) -> Image.Image:
    """A studio shot taken again: the product turned, moved and zoomed on the same backdrop."""
    affine = cv2.getRotationMatrix2D((SIZE / 2, SIZE / 2), degrees, zoom)
    affine[:, 2] += shift
    backdrop = tuple(int(c) for c in np.asarray(product)[0, 0])
    return Image.fromarray(cv2.warpAffine(np.asarray(product), affine, (SIZE, SIZE), borderValue=backdrop))


def blurred(photo: Image.Image, sigma: float) -> Image.Image:
    """A phone photo out of focus: blurred, then noisy."""
    array = cv2.GaussianBlur(np.asarray(photo, np.float32), (0, 0), sigma)
    array = array + np.random.default_rng(0).normal(0, 4, array.shape)
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))
