"""One photo verified against the claimed brand's candidate references.

The references with the most geometric inliers are refined densely; where keypoints do not agree
(a plain or blurred product), a dense search places the candidates' products in the photo instead.
The fit that correlates best moves to another candidate clearly closer in colour (the photo's own
colourway), and is compared in its reference's frame; it gives the signals, a heatmap
in the photo's coordinates, the most suspicious region's box and its name."""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, replace

import cv2
import numpy as np

from detector.alignment.align import Alignment, align
from detector.alignment.compare import Comparison, compare
from detector.alignment.dense import DenseFit, colour_distance, correlation, dense_align, ecc_refine
from detector.alignment.features import ReferenceFeatures, View
from detector.alignment.recipe import AlignmentRecipe

_ROWS, _COLUMNS = ("top", "middle", "bottom"), ("left", "centre", "right")


@dataclass(frozen=True)
class Verification:
    reference_id: int | None  # the best-aligned reference (None: none could be tried)
    inliers: int
    inlier_ratio: float
    comparison: Comparison | None  # None: not aligned
    failure: str | None  # why the photo is not aligned
    method: str | None = None  # how it was aligned: "keypoints" or "dense" (no keypoints: a coarse search, then ECC)
    correlation: float | None = None  # the fit's colour correlation inside the product region (aligned only)
    heatmap: list[list[float]] | None = None  # rows x columns over the photo, 0 (like the reference) .. 1
    box: tuple[int, int, int, int] | None = None  # x0, y0, x1, y1 in the photo's pixels: the most suspicious block
    region: str | None = None  # where that block sits on the product ("the label", "the product's top left")
    difference: str | None = None  # what differs most there: "colour" or "structure"

    @property
    def aligned(self) -> bool:
        return self.comparison is not None

    @property
    def signals(self) -> dict[str, float]:
        """Inlier count and ratio always; the fit's correlation and the comparison's signals when aligned."""
        base = {"align_inliers": math.log1p(self.inliers), "align_inlier_ratio": self.inlier_ratio}
        if self.comparison is None:
            return base
        return {**base, "align_correlation": float(self.correlation), **self.comparison.signals}


def verify(photo: View, candidates: dict[int, ReferenceFeatures], recipe: AlignmentRecipe) -> Verification:
    """``candidates``: reference id -> features, closest by embedding first."""
    if not candidates:
        return Verification(None, 0, 0.0, None, "no reference of the brand has alignment features")
    tried = {rid: align(photo, features.view, recipe) for rid, features in candidates.items()}
    best_id, best = max(tried.items(), key=lambda item: item[1].inliers)
    if best.holds(recipe):
        contenders = sorted((item for item in tried.items()
                             if item[1].holds(recipe) and item[1].inliers >= recipe.compared_inliers * best.inliers),
                            key=lambda item: -item[1].inliers)[: recipe.compared]
        # The photo is judged against the reference it resembles most (a brand's colourways share one
        # geometry, so inliers alone cannot tell which one was photographed); only that fit is refined.
        fits = [(rid, DenseFit(a.homography, correlation(photo, candidates[rid], a.homography, recipe))) for rid, a in contenders]
        rid, start = max(fits, key=lambda item: item[1].correlation)
        fit, method = _refined(photo, candidates[rid], start, recipe), "keypoints"
        rid, fit = _own_colourway(photo, candidates, tried, rid, fit, recipe)
    else:
        # Too few keypoints agree (a plain or blurred product): the candidates are searched for densely,
        # and the best placement is kept only if it correlates like a view of the same product, once moved
        # to the photo's own colourway (a placement that correlates too little may be another colourway's).
        rid, fit = dense_align(photo, candidates, recipe) or (None, None)
        if fit is not None:
            rid, fit = _own_colourway(photo, candidates, tried, rid, fit, recipe)
        if fit is None or fit.correlation < recipe.min_correlation:
            dense = "no dense fit" if fit is None else f"a dense fit correlating {fit.correlation:.2f}"
            return Verification(best_id, best.inliers, best.inlier_ratio, None,
                                f"{best.inliers} geometric inliers with the best reference ({recipe.min_inliers} needed) "
                                f"and {dense} (at least {recipe.min_correlation} needed)")
        method = "dense"
    comparison = compare(photo, candidates[rid], fit.homography, recipe)
    if comparison is None:
        return Verification(best_id, best.inliers, best.inlier_ratio, None,
                            "the photo shows too little of the product to compare")
    inliers = tried[rid]
    return _explained(Verification(rid, inliers.inliers, inliers.inlier_ratio, comparison, None, method, fit.correlation),
                      fit.homography, candidates[rid], photo, recipe)


def _refined(photo: View, reference: ReferenceFeatures, start: DenseFit, recipe: AlignmentRecipe) -> DenseFit:
    """A keypoint fit refined densely; as it was where ECC does not converge or ends correlating less
    (on the synthetic benchmark ECC lowered a fit's correlation from 0.5 to 0.1 on some photos)."""
    refined = ecc_refine(photo, reference, start.homography, recipe.refine)
    if refined is None:
        return start
    fit = DenseFit(refined, correlation(photo, reference, refined, recipe))
    return fit if fit.correlation >= start.correlation else start


def _own_colourway(photo: View, candidates: dict[int, ReferenceFeatures], tried: dict[int, Alignment], rid: int,
                   fit: DenseFit, recipe: AlignmentRecipe) -> tuple[int, DenseFit]:
    """The fit moved to the candidate whose colours the photo shows, where another is clearly closer
    in colour than ``rid`` (under its own keypoint fit, or else under ``fit`` carried over by the two
    references' own fit) and stays aligned once refined there: it correlates at least as well as
    ``min_correlation`` or the fit it replaces. Keypoints and correlation cannot tell a brand's
    colourways apart: on the synthetic benchmark 18% of aligned genuine photos were compared with
    another colourway than their own; 9% after the move, 7% once the move carried fits over and
    no longer asked a moved fit to correlate better than the one it replaced."""
    distance = colour_distance(photo, candidates[rid], fit.homography, recipe)
    closer = []
    for other, features in candidates.items():
        if other == rid:
            continue
        alignment = tried[other]
        start = alignment.homography if alignment.holds(recipe) else _carried(fit.homography, candidates[rid], features, recipe)
        if (d := colour_distance(photo, features, start, recipe)) < recipe.colourway_margin * distance:
            closer.append((d, other, start))
    if not closer:
        return rid, fit
    _, other, start = min(closer, key=lambda item: item[0])
    refined = ecc_refine(photo, candidates[other], start, recipe.refine)
    if refined is None:
        return rid, fit
    moved = DenseFit(refined, correlation(photo, candidates[other], refined, recipe))
    if moved.correlation < min(recipe.min_correlation, fit.correlation) \
            or colour_distance(photo, candidates[other], refined, recipe) >= distance:
        return rid, fit
    return other, moved


def _carried(homography: np.ndarray, reference: ReferenceFeatures, other: ReferenceFeatures,
             recipe: AlignmentRecipe) -> np.ndarray:
    """A fit onto ``reference`` carried onto ``other`` through the two references' own keypoint fit
    (studio shots of one product: many sharp keypoints); as it was where they do not align."""
    between = _between(reference, other, recipe)
    return homography if between is None else between @ homography


def _between(reference: ReferenceFeatures, other: ReferenceFeatures, recipe: AlignmentRecipe) -> np.ndarray | None:
    """The two references' own keypoint fit (None: they do not align), fitted once per pair while both
    stay loaded (``ReferenceFeatures.fits_onto``)."""
    memo = reference.fits_onto
    held = memo.get(id(other))
    if held is None or held[0]() is not other or held[1] != recipe:
        fit = align(reference.view, other.view, recipe)
        between = fit.homography if fit.holds(recipe) else None
        for gone in [key for key, (ref, _, _) in memo.items() if ref() is None]:
            del memo[gone]  # references unloaded since: the memo holds no more than the live ones
        held = memo[id(other)] = (weakref.ref(other), recipe, between)
    return held[2]


def _explained(verification: Verification, homography: np.ndarray, reference: ReferenceFeatures, photo: View,
               recipe: AlignmentRecipe) -> Verification:
    """``verification`` with its heatmap, the most suspicious block's box in the photo, its region's name
    and what differs there."""
    comparison = verification.comparison
    excess = comparison.blocks - np.nanmedian(comparison.blocks)
    i, j = np.unravel_index(int(np.nanargmax(excess)), excess.shape)
    x0, y0, x1, y1 = comparison.box
    ex, ey = np.linspace(x0, x1, recipe.grid + 1), np.linspace(y0, y1, recipe.grid + 1)
    block = (ex[j], ey[i], ex[j + 1], ey[i + 1])
    to_photo = np.linalg.inv(homography)
    return replace(
        verification,
        heatmap=_heatmap(excess / recipe.heat_unit, comparison.box, homography, photo, recipe),
        box=_photo_box(block, to_photo, photo.scale, photo.original_size),
        region=_region_name(block, reference.label, comparison.box),
        difference="colour" if comparison.colour[i, j] / recipe.colour_unit
        >= np.nan_to_num(comparison.structure[i, j]) / recipe.structure_unit else "structure",
    )


def _heatmap(heat: np.ndarray, box, homography: np.ndarray, photo: View, recipe: AlignmentRecipe) -> list[list[float]]:
    """Block heat sampled at the centres of a grid over the photo (0 outside the compared product).

    Heat is the block's score above the photo's own median in fixed units, never rescaled per photo,
    so a genuine photo whose blocks all differ a little stays cool."""
    h, w = photo.shape
    cells = recipe.heatmap_cells
    rows, columns = (cells, max(1, round(cells * w / h))) if h >= w else (max(1, round(cells * h / w)), cells)
    cy, cx = (np.arange(rows) + 0.5) * h / rows, (np.arange(columns) + 0.5) * w / columns
    centres = np.stack(np.meshgrid(cx, cy), axis=-1).reshape(-1, 1, 2).astype(np.float32)
    mapped = cv2.perspectiveTransform(centres, homography).reshape(rows, columns, 2)
    x0, y0, x1, y1 = box
    grid = heat.shape[0]
    j = np.floor((mapped[..., 0] - x0) / (x1 - x0) * grid).astype(int)
    i = np.floor((mapped[..., 1] - y0) / (y1 - y0) * grid).astype(int)
    inside = (i >= 0) & (i < grid) & (j >= 0) & (j < grid)
    values = np.zeros((rows, columns))
    values[inside] = heat[i[inside], j[inside]]
    return np.round(np.clip(np.nan_to_num(values), 0.0, 1.0), 3).tolist()


def _photo_box(block, to_photo: np.ndarray, scale: float, photo_size: tuple[int, int]) -> tuple[int, int, int, int]:
    bx0, by0, bx1, by1 = block
    corners = np.float32([[bx0, by0], [bx1, by0], [bx1, by1], [bx0, by1]]).reshape(-1, 1, 2)
    points = cv2.perspectiveTransform(corners, to_photo).reshape(-1, 2) / scale
    width, height = photo_size
    x0, y0 = np.clip(points.min(0), 0, [width, height])
    x1, y1 = np.clip(points.max(0), 0, [width, height])
    return int(x0), int(y0), int(math.ceil(x1)), int(math.ceil(y1))


def _region_name(block, label, box) -> str:
    cx, cy = (block[0] + block[2]) / 2, (block[1] + block[3]) / 2
    if label[0] <= cx <= label[2] and label[1] <= cy <= label[3]:
        return "the label"
    x0, y0, x1, y1 = box
    row = _ROWS[min(2, int(3 * (cy - y0) / max(1, y1 - y0)))]
    column = _COLUMNS[min(2, int(3 * (cx - x0) / max(1, x1 - x0)))]
    return "the product's centre" if (row, column) == ("middle", "centre") else f"the product's {row} {column}"
