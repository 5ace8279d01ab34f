"""A photo compared with a reference in the reference's frame, block by block inside its product region.

The photo is warped onto the reference and its lighting normalised: a shading that may vary smoothly
across the product (a plane in log-lightness, fitted robustly), then a gain and an offset per
channel (white balance and the camera's contrast). Differences tolerate a residual misalignment of a
few pixels: each is the smallest over small shifts. The share of product pixels whose colour differs
clearly measures a difference of any size, wherever it lies. Per block: colour difference (Lab dE)
and structure difference (1 - NCC of lightness); a block's score is their sum in recipe units, and a
defect is a block that stands out against the photo's own median block, or a small window (a button,
an emblem) whose colour stands out against the product's median. The label (the reference's
keypoint-densest window) is re-aligned on its own: a logo placed elsewhere than the product's
geometry predicts shows as a shift. Fine detail (print, material) is compared as high-frequency
energy per block.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from detector.alignment.features import ReferenceFeatures, View
from detector.alignment.recipe import AlignmentRecipe

_MIN_BLOCK_COVER = 0.5  # a block counts when at least this share of its pixels are compared product pixels
_FLAT = 2.0  # lightness std below which a block has no structure to compare
_TRIM = 0.8  # the shading fit keeps this share of best-fitting pixels
_WHITE_BALANCE_GAINS = (0.6, 1.6)  # gains beyond these are a different colour, not a different light
_MAX_OFFSET = 0.2  # a channel's offset (of full scale) beyond this is a different colour, not another camera
_SEARCH = 0.25  # the label is searched within this share of its size around where the geometry puts it
_RIM = 0.04  # share of the product's diagonal left out along its outline (misregistration, the reference's shadow)
_EPS = 0.02
_CROP_MARGIN = 0.12  # share of the product's longer side kept around it
_CHANNEL_MEAN = np.full((1, 3), 1 / 3, np.float32)


@dataclass(frozen=True)
class Comparison:
    signals: dict[str, float]
    blocks: np.ndarray  # (grid, grid) block score (NaN: not compared), reference frame
    colour: np.ndarray  # (grid, grid) mean dE per block
    structure: np.ndarray  # (grid, grid) 1 - NCC per block (NaN: flat or not compared)
    box: tuple[int, int, int, int]  # the product box the grid divides, reference working pixels
    coverage: float


def compare(photo: View, reference: ReferenceFeatures, homography: np.ndarray, recipe: AlignmentRecipe) -> Comparison | None:
    """None when the warped photo covers too little of the reference's product, or the product is too
    small to divide into blocks."""
    box = reference.box
    if min(box[2] - box[0], box[3] - box[1]) < 2 * recipe.grid:
        return None  # a product a few pixels across has no blocks to compare
    # Everything happens in a crop around the product (with room for the label search and shifts).
    h, w = reference.mask.shape
    margin = int(_CROP_MARGIN * max(box[2] - box[0], box[3] - box[1])) + 8
    cx0, cy0, cx1, cy1 = max(0, box[0] - margin), max(0, box[1] - margin), min(w, box[2] + margin), min(h, box[3] + margin)
    to_crop = np.array([[1, 0, -cx0], [0, 1, -cy0], [0, 0, 1]], np.float64) @ homography
    size = (cx1 - cx0, cy1 - cy0)
    warped = cv2.warpPerspective(photo.bgr, to_crop, size, flags=cv2.INTER_LINEAR)
    seen = cv2.warpPerspective(np.full(photo.shape, 255, np.uint8), to_crop, size, flags=cv2.INTER_NEAREST)
    seen = cv2.erode(seen, np.ones((5, 5), np.uint8)) > 0
    mask = reference.mask[cy0:cy1, cx0:cx1]
    diagonal = float(np.hypot(box[2] - box[0], box[3] - box[1]))
    rim = max(3, int(_RIM * diagonal)) | 1
    region = cv2.erode(mask.astype(np.uint8), np.ones((rim, rim), np.uint8)).astype(bool) & seen
    coverage = float(region.sum()) / max(1, int(mask.sum()))
    if coverage < recipe.min_coverage:
        return None
    ref = reference.view.bgr[cy0:cy1, cx0:cx1].astype(np.float32) / 255
    photo_lin = _normalise(warped.astype(np.float32) / 255, ref, region)
    lab_p = cv2.cvtColor(cv2.GaussianBlur(photo_lin, (0, 0), recipe.blur_sigma), cv2.COLOR_BGR2LAB)
    extra = _photo_blur(photo_lin, ref, region, recipe.blur_steps)
    lab_r = cv2.cvtColor(cv2.GaussianBlur(ref, (0, 0), float(np.hypot(recipe.blur_sigma, extra))), cv2.COLOR_BGR2LAB)
    local_box = (box[0] - cx0, box[1] - cy0, box[2] - cx0, box[3] - cy0)
    edges = _block_edges(local_box, recipe.grid)
    delta_e = _tolerant_delta_e(lab_p, lab_r, recipe.shift_px)
    colour = _block_means(delta_e, region, edges)
    structure = _block_structure(lab_p[..., 0], lab_r[..., 0], region, edges, recipe.shift_px)
    detail = _block_detail(photo_lin, ref, region, edges)
    blocks = colour / recipe.colour_unit + np.nan_to_num(structure) / recipe.structure_unit
    valid = blocks[~np.isnan(blocks)]
    if len(valid) < 4:
        return None
    logs = detail[~np.isnan(detail)]
    lx0, ly0, lx1, ly1 = reference.label
    shift, label_ncc = _label_shift(lab_p[..., 0], lab_r[..., 0], (lx0 - cx0, ly0 - cy0, lx1 - cx0, ly1 - cy0), local_box)
    signals = {
        "aligned_colour_diff": float(np.nanmedian(colour)),
        "aligned_diff_area": float((delta_e[region] > recipe.differing_delta_e).mean()),
        "aligned_structure_diff": float(np.nanmean(structure)) if not np.isnan(structure).all() else 0.0,
        "aligned_block_peak": float(valid.max() - np.median(valid)),
        "aligned_spot_peak": _spot_peak(delta_e, region, recipe.spot_window * diagonal),
        "placement_shift": shift,
        "label_mismatch": 1.0 - label_ncc,
        "detail_loss": float(np.median(logs) - np.percentile(logs, 10)) if len(logs) >= 4 else 0.0,
    }
    return Comparison(signals, blocks, colour, structure, box, coverage)


def _normalise(photo: np.ndarray, ref: np.ndarray, region: np.ndarray) -> np.ndarray:
    """The photo's lighting mapped onto the reference's: log-lightness shading a + b*x + c*y fitted on
    the product region (refitted on its best-fitting share, so a local defect does not drag it), then
    each channel's gain and offset (``_channel_affine``)."""
    h, w = region.shape
    ys, xs = np.nonzero(region)
    step = max(1, len(ys) // 5000)  # a sample is enough for a few parameters
    ys, xs = ys[::step], xs[::step]
    ratio = np.log(ref[ys, xs].mean(1) + _EPS) - np.log(photo[ys, xs].mean(1) + _EPS)
    design = np.stack([np.ones(len(ys)), xs / w - 0.5, ys / h - 0.5], axis=1)
    keep = np.ones(len(ys), bool)
    for _ in range(2):
        coef, *_ = np.linalg.lstsq(design[keep], ratio[keep], rcond=None)
        residual = np.abs(design @ coef - ratio)
        keep = residual <= np.quantile(residual, _TRIM)
    # exp(a + b*x + c*y) is separable: a row profile times a column profile, not a full-size exponential
    column = np.exp(coef[0] + coef[2] * (np.arange(h) / h - 0.5)).astype(np.float32)
    row = np.exp(coef[1] * (np.arange(w) / w - 0.5)).astype(np.float32)
    shading = np.outer(column, row)
    shaded = photo * shading[..., None]
    gains, offsets = _channel_affine(ref[ys, xs], shaded[ys, xs])
    return np.clip(shaded * gains + offsets, 0.0, 1.0)


def _channel_affine(reference: np.ndarray, photo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per channel, the gain and offset that map the photo's values (n, 3) onto the reference's, fitted
    on the share of pixels they explain best (a local defect does not drag them) and bounded to what a
    change of light and camera contrast explains. An offset as well as a gain: a phone's contrast
    curve darkens dark colours and brightens light ones, which one gain cannot undo."""
    gains, offsets = np.ones(3, np.float32), np.zeros(3, np.float32)
    for channel in range(3):
        x, y = photo[:, channel].astype(np.float64), reference[:, channel].astype(np.float64)
        keep = np.ones(len(x), bool)
        for _ in range(2):
            gain, offset = np.polyfit(x[keep], y[keep], 1) if np.ptp(x[keep]) > _EPS else (1.0, float(np.median(y - x)))
            gain = float(np.clip(gain, *_WHITE_BALANCE_GAINS))
            offset = float(np.clip(offset, -_MAX_OFFSET, _MAX_OFFSET))
            residual = np.abs(gain * x + offset - y)
            keep = residual <= np.quantile(residual, _TRIM)
        gains[channel], offsets[channel] = gain, offset
    return gains, offsets


def white_balance(reference: np.ndarray, photo: np.ndarray) -> np.ndarray:
    """One gain per channel that maps the photo's colours (n, 3) onto the reference's: the median ratio,
    within the range a change of light explains."""
    return np.clip(np.median((reference + _EPS) / (photo + _EPS), axis=0), *_WHITE_BALANCE_GAINS)


def _photo_blur(photo: np.ndarray, ref: np.ndarray, region: np.ndarray, steps: tuple[float, ...]) -> float:
    """How much blurrier the photo is than the reference (Gaussian sigma, pixels): the step whose
    blurred reference correlates best with the photo's lightness over the product region, judged at
    half resolution (enough for a blur of a pixel or more, and a quarter of the work). The reference
    is blurred as much before comparing, so a soft photo of a genuine product does not differ at
    every edge."""
    half = lambda image: cv2.resize(image, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    inside = half(region.astype(np.float32)) > 0.5
    light_p = half(_lightness(photo))[inside]
    light_p = light_p - light_p.mean()
    light_r = half(_lightness(ref))
    best, best_sigma = -np.inf, 0.0
    for sigma in steps:
        blurred = (cv2.GaussianBlur(light_r, (0, 0), sigma / 2) if sigma else light_r)[inside]
        blurred = blurred - blurred.mean()
        score = float(light_p @ blurred) / (float(np.linalg.norm(light_p) * np.linalg.norm(blurred)) + 1e-9)
        if score > best:
            best, best_sigma = score, sigma
    return best_sigma


def _lightness(image: np.ndarray) -> np.ndarray:
    """The channels' mean per pixel (as numpy's mean over channels, in a hundredth of its time)."""
    return cv2.transform(image, _CHANNEL_MEAN)


def _shifts(px: int):
    return [(dy, dx) for dy in (-px, 0, px) for dx in (-px, 0, px)] if px else [(0, 0)]


def _shifted(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    return np.roll(image, (dy, dx), axis=(0, 1)) if dy or dx else image


def _tolerant_delta_e(lab_p: np.ndarray, lab_r: np.ndarray, px: int) -> np.ndarray:
    """Per pixel, the smallest dE between the photo and the reference shifted by up to ``px``."""
    h, w = lab_p.shape[:2]
    padded = cv2.copyMakeBorder(lab_r, px, px, px, px, cv2.BORDER_REFLECT)
    channel_sum = np.ones((1, 3), np.float32)
    best = None
    for dy, dx in _shifts(px):
        difference = cv2.subtract(lab_p, padded[px - dy:px - dy + h, px - dx:px - dx + w])
        squared = cv2.transform(cv2.multiply(difference, difference), channel_sum)
        best = squared if best is None else cv2.min(best, squared)
    return cv2.sqrt(best)


def _block_edges(box, grid: int) -> tuple[np.ndarray, np.ndarray]:
    x0, y0, x1, y1 = box
    return np.linspace(y0, y1, grid + 1).round().astype(int), np.linspace(x0, x1, grid + 1).round().astype(int)


def _block_sums(values: np.ndarray, edges) -> np.ndarray:
    """Sums of ``values`` over each block of the grid (blocks are at least one pixel: see ``compare``)."""
    ey, ex = edges
    inside = values[ey[0]:ey[-1], ex[0]:ex[-1]]
    return np.add.reduceat(np.add.reduceat(inside, ey[:-1] - ey[0], axis=0), ex[:-1] - ex[0], axis=1).astype(np.float64)


def _block_means(values: np.ndarray, region: np.ndarray, edges) -> np.ndarray:
    """Mean of ``values`` over each block's covered product pixels (NaN: too few of them)."""
    covered, counts = _coverage(region, edges)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = _block_sums(values * region, edges) / counts
    return np.where(covered, means, np.nan)


def _coverage(region: np.ndarray, edges) -> tuple[np.ndarray, np.ndarray]:
    ey, ex = edges
    counts = _block_sums(region.astype(np.float32), edges)
    areas = np.outer(np.diff(ey), np.diff(ex))
    return counts >= np.maximum(16, _MIN_BLOCK_COVER * areas), counts


def _block_structure(light_p: np.ndarray, light_r: np.ndarray, region: np.ndarray, edges, px: int) -> np.ndarray:
    """1 - NCC of lightness per textured block, the best over small shifts of the reference."""
    covered, n = _coverage(region, edges)
    weight = region.astype(np.float32)
    a = light_p * weight
    sa, saa = _block_sums(a, edges), _block_sums(a * light_p, edges)
    best = np.full(n.shape, -1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        var_a = saa / n - (sa / n) ** 2
        for dy, dx in _shifts(px):
            r = _shifted(light_r, dy, dx)
            b = r * weight
            sb, sbb, sab = _block_sums(b, edges), _block_sums(b * r, edges), _block_sums(a * r, edges)
            var_b = sbb / n - (sb / n) ** 2
            if dy == 0 and dx == 0:
                flat = np.sqrt(np.maximum(var_b, 0)) <= _FLAT
            ncc = (sab / n - sa * sb / n**2) / (np.sqrt(np.maximum(var_a, 0) * np.maximum(var_b, 0)) + 1e-6)
            best = np.fmax(best, ncc)
    return np.where(covered & ~flat, 1.0 - best, np.nan)


def _block_detail(photo: np.ndarray, ref: np.ndarray, region: np.ndarray, edges) -> np.ndarray:
    """log of the photo's high-frequency energy over the reference's, per textured block."""
    hf_p = np.abs(cv2.Laplacian(cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY), cv2.CV_32F))
    hf_r = np.abs(cv2.Laplacian(cv2.cvtColor(ref, cv2.COLOR_BGR2GRAY), cv2.CV_32F))
    energy_p, energy_r = _block_means(hf_p, region, edges), _block_means(hf_r, region, edges)
    with np.errstate(invalid="ignore"):
        return np.where(energy_r > _FLAT / 255, np.log((energy_p + 1e-3) / (energy_r + 1e-3)), np.nan)


def _spot_peak(delta_e: np.ndarray, region: np.ndarray, window: float) -> float:
    """The largest mean dE in a square window of ``window`` pixels (mostly inside the product) above
    the product's median dE: a small region that differs (an emblem, a button) against the photo's
    own level, undiluted by a block eight times its size."""
    side = max(3, int(window)) | 1
    inside = region.astype(np.float32)
    covered = cv2.boxFilter(inside, -1, (side, side), normalize=False)
    local = cv2.boxFilter(delta_e * inside, -1, (side, side), normalize=False) / np.maximum(covered, 1.0)
    full = covered >= _MIN_BLOCK_COVER * side * side
    return float(local[full].max() - np.median(delta_e[region])) if full.any() else 0.0


def _label_shift(light_p, light_r, label, box) -> tuple[float, float]:
    """How far the label sits from where the product's geometry puts it (share of the product's
    diagonal), and how well it matches there (NCC)."""
    lx0, ly0, lx1, ly1 = label
    template = light_r[ly0:ly1, lx0:lx1]
    if template.size == 0 or template.std() < _FLAT:
        return 0.0, 1.0
    mx, my = int((lx1 - lx0) * _SEARCH), int((ly1 - ly0) * _SEARCH)
    h, w = light_p.shape
    sx0, sy0, sx1, sy1 = max(0, lx0 - mx), max(0, ly0 - my), min(w, lx1 + mx), min(h, ly1 + my)
    window = light_p[sy0:sy1, sx0:sx1]
    if window.shape[0] < template.shape[0] or window.shape[1] < template.shape[1]:
        return 0.0, 1.0
    response = cv2.matchTemplate(window, template, cv2.TM_CCOEFF_NORMED)
    _, peak, _, (px, py) = cv2.minMaxLoc(response)
    dx, dy = sx0 + px - lx0, sy0 + py - ly0
    diagonal = float(np.hypot(box[2] - box[0], box[3] - box[1]))
    return float(np.hypot(dx, dy) / diagonal), float(peak)
