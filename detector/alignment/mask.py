"""The product region of a reference photo, and the part of it densest in keypoints (its label)."""

from __future__ import annotations

import cv2
import numpy as np

_BORDER = 0.03  # share of each side read as background
# Product: a chroma unlike the background's, or a lightness far from it. A soft shadow darkens the
# background by less than _MIN_LIGHTNESS and keeps its chroma, so it stays background.
_MIN_CHROMA, _MIN_LIGHTNESS = 8.0, 35.0
_MAX_HOLE = 0.01  # holes up to this share of the product are product (a white patch); larger ones are background
_MIN_SHARE, _MAX_SHARE = 0.05, 0.97  # outside these, the background is not separable: the whole frame is the product


def product_mask(bgr: np.ndarray) -> np.ndarray:
    """Pixels unlike the photo's border colour, closed, largest component, small holes filled.

    Reference shots are studio photos of one product on a plain background; where that does not
    hold (no separable background) the whole frame is the product region."""
    h, w = bgr.shape[:2]
    lab = cv2.cvtColor(bgr, cv2.COLOR_BGR2LAB).astype(np.float32)
    b = max(2, int(round(min(h, w) * _BORDER)))
    border = np.concatenate([lab[:b].reshape(-1, 3), lab[-b:].reshape(-1, 3), lab[:, :b].reshape(-1, 3),
                             lab[:, -b:].reshape(-1, 3)])
    background = np.median(border, axis=0)
    chroma = np.linalg.norm(lab[..., 1:] - background[1:], axis=2)
    spread = np.median(np.linalg.norm(border[:, 1:] - background[1:], axis=1))
    lightness = np.abs(lab[..., 0] - background[0])
    mask = ((chroma > max(_MIN_CHROMA, 4 * spread)) | (lightness > _MIN_LIGHTNESS)).astype(np.uint8)
    k = max(3, int(round(min(h, w) / 80)) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    mask = cv2.morphologyEx(cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel, iterations=2), cv2.MORPH_OPEN, kernel)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count > 1:
        mask = (labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
    area = int(mask.sum())
    _, hole_labels, stats, _ = cv2.connectedComponentsWithStats(1 - mask, connectivity=4)
    x, y, hw, hh, hole_area = stats[1:].T
    inner = (x > 0) & (y > 0) & (x + hw < w) & (y + hh < h) & (hole_area <= _MAX_HOLE * area)
    mask = mask.astype(bool) | np.isin(hole_labels, 1 + np.flatnonzero(inner))
    if not _MIN_SHARE <= mask.mean() <= _MAX_SHARE:
        return np.ones((h, w), bool)
    return mask


def bounding_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def label_box(mask: np.ndarray, points: np.ndarray, grid: int) -> tuple[int, int, int, int]:
    """The window of 3 x 3 grid cells of the product's box holding the most keypoints inside the product."""
    x0, y0, x1, y1 = bounding_box(mask)
    cw, ch = (x1 - x0) / grid, (y1 - y0) / grid
    inside = [p for p in points if mask[min(int(p[1]), mask.shape[0] - 1), min(int(p[0]), mask.shape[1] - 1)]]
    counts = np.zeros((grid, grid))
    for x, y in inside:
        counts[min(grid - 1, int((y - y0) / ch)), min(grid - 1, int((x - x0) / cw))] += 1
    size = min(3, grid)
    windows = np.lib.stride_tricks.sliding_window_view(counts, (size, size)).sum(axis=(2, 3))
    row, col = np.unravel_index(int(np.argmax(windows)), windows.shape)
    return (int(x0 + col * cw), int(y0 + row * ch), int(round(x0 + (col + size) * cw)), int(round(y0 + (row + size) * ch)))
