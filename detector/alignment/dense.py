"""Alignment without keypoints, for plain or blurred products where SIFT finds too few repeatable
points: the reference's product region is searched over the photo at a coarse scale (rotations x
scales, normalised colour correlation), and the best placement is refined densely (ECC: affine,
then a homography). ``ecc_refine`` is also the keypoint path's refinement.

Whether a fit is a view of the same product is said by ``correlation``: the warped photo's colours
against the reference's inside its product region, on the pixels a per-channel gain explains best."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from detector.alignment.compare import white_balance
from detector.alignment.features import ReferenceFeatures, View
from detector.alignment.mask import bounding_box
from detector.alignment.recipe import AlignmentRecipe, EccStage

# A homography that shrinks or grows the photo's area more than this, or bends it strongly, is a
# degenerate fit, not a view of the same product.
_AREA_RANGE = (1 / 25, 25.0)
_MAX_PERSPECTIVE = 2e-3
_MIN_TEMPLATE_PIXELS = 20  # a coarse template with fewer product pixels than this places nothing
_MOTIONS = {"affine": cv2.MOTION_AFFINE, "homography": cv2.MOTION_HOMOGRAPHY}


@dataclass(frozen=True)
class DenseFit:
    homography: np.ndarray  # 3 x 3, photo working pixels -> reference working pixels
    correlation: float  # colour correlation with the reference inside its product region, -1 .. 1


def plausible(homography: np.ndarray) -> bool:
    area = float(np.linalg.det(homography[:2, :2])) / float(homography[2, 2]) ** 2
    return _AREA_RANGE[0] < area < _AREA_RANGE[1] and float(np.abs(homography[2, :2]).max()) < _MAX_PERSPECTIVE


def dense_align(photo: View, candidates: dict[int, ReferenceFeatures], recipe: AlignmentRecipe) -> tuple[int, DenseFit] | None:
    """The closest candidate's product placed in the photo and refined; where that fit does not reach
    ``recipe.min_correlation`` (often another colourway), the other candidate the coarse search places
    best. The better-correlating fit, or None when nothing fits."""
    ids = list(candidates)
    first = _placed(photo, {ids[0]: candidates[ids[0]]}, recipe)
    if len(ids) == 1 or (first is not None and first[1].correlation >= recipe.min_correlation):
        return first
    fits = [fit for fit in (first, _placed(photo, {rid: candidates[rid] for rid in ids[1:]}, recipe)) if fit is not None]
    return max(fits, key=lambda fit: fit[1].correlation, default=None)


def _placed(photo: View, candidates: dict[int, ReferenceFeatures], recipe: AlignmentRecipe) -> tuple[int, DenseFit] | None:
    """The candidate whose product the coarse search places best in the photo, and that placement refined."""
    placements = [(found[0], rid, found[1]) for rid, features in candidates.items()
                  if (found := _coarse_placement(photo, features, recipe)) is not None]
    if not placements:
        return None
    _, rid, homography = max(placements, key=lambda item: item[0])
    reference = candidates[rid]
    for stage in (recipe.dense_affine, recipe.refine):
        homography = None if homography is None else ecc_refine(photo, reference, homography, stage)
    if homography is None or _visible_share(photo, reference, homography, recipe) < 1 - recipe.dense_overhang:
        return None  # past the overhang the search allows: the correlation of what is left says little
    return rid, DenseFit(homography, correlation(photo, reference, homography, recipe))


def ecc_refine(photo: View, reference: ReferenceFeatures, homography: np.ndarray, stage: EccStage) -> np.ndarray | None:
    """``homography`` (photo -> reference) refined by ECC over the reference's product region; None when
    ECC does not converge or its result is implausible."""
    scale = min(1.0, stage.side / max(reference.view.shape))
    s = np.diag([scale, scale, 1.0])
    picture = (lambda bgr: bgr) if stage.colour else (lambda bgr: cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    template = picture(reference.view.scaled(scale))
    template_mask = reference.scaled_mask(scale).astype(np.uint8) * 255
    target = picture(photo.scaled(scale))
    warp = s @ np.linalg.inv(homography) @ np.linalg.inv(s)  # ECC's warp maps reference pixels to photo pixels
    warp = (warp / warp[2, 2]).astype(np.float32)
    motion = _MOTIONS[stage.motion]
    try:
        _, warp = cv2.findTransformECCWithMask(
            template, target, template_mask, np.full(target.shape[:2], 255, np.uint8),
            warp if motion == cv2.MOTION_HOMOGRAPHY else warp[:2], motion,
            (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, stage.iterations, stage.min_gain), 3)
    except cv2.error:  # did not converge: the images do not correlate from this start
        return None
    warp = np.vstack([warp, [0, 0, 1]]) if warp.shape[0] == 2 else warp
    refined = np.linalg.inv(np.linalg.inv(s) @ warp.astype(np.float64) @ s)
    refined /= refined[2, 2]
    return refined if plausible(refined) else None


def correlation(photo: View, reference: ReferenceFeatures, homography: np.ndarray, recipe: AlignmentRecipe) -> float:
    """How well a fit shows the reference's product: the warped photo's colours against the
    reference's, zero-mean, over the reference's product region seen in the photo (at
    ``recipe.correlation_side``), on the ``recipe.correlation_keep`` share of pixels that a
    per-channel gain explains best (so one tampered region does not make a view of the same product
    look like another product)."""
    sampled = _sampled(photo, reference, homography, recipe)
    if sampled is None:
        return -1.0
    template, warped = sampled
    a, b = template - template.mean(0), warped - warped.mean(0)
    gain = (a * b).sum(0) / ((a * a).sum(0) + 1e-9)
    residual = np.abs(b - gain * a).sum(1)
    kept = residual <= np.quantile(residual, recipe.correlation_keep)
    a, b = a[kept] - a[kept].mean(0), b[kept] - b[kept].mean(0)
    return float((a * b).sum() / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-9))


def colour_distance(photo: View, reference: ReferenceFeatures, homography: np.ndarray, recipe: AlignmentRecipe) -> float:
    """How far a fit's colours are from the reference's: the median Lab dE inside its product region
    (at ``recipe.correlation_side``) after one white-balance gain per channel. Correlation cannot tell
    a brand's colourways apart (it forgives any per-channel gain and offset); this can."""
    sampled = _sampled(photo, reference, homography, recipe)
    if sampled is None:
        return float("inf")
    template, warped = (np.float32(pixels / 255).reshape(-1, 1, 3) for pixels in sampled)
    gains = white_balance(template, warped).astype(np.float32)
    lab_photo = cv2.cvtColor(np.minimum(warped * gains, 1.0), cv2.COLOR_BGR2LAB)
    lab_reference = cv2.cvtColor(template, cv2.COLOR_BGR2LAB)
    return float(np.median(np.linalg.norm(lab_photo - lab_reference, axis=2)))


def _sampled(photo: View, reference: ReferenceFeatures, homography: np.ndarray,
             recipe: AlignmentRecipe) -> tuple[np.ndarray, np.ndarray] | None:
    """The reference's and the warped photo's BGR pixels (n, 3) inside the reference's product region
    seen in the photo, at ``recipe.correlation_side``; None when too few are seen."""
    scale, to_reference, region = _seen_region(photo, reference, homography, recipe)
    if region.sum() < _MIN_TEMPLATE_PIXELS:
        return None
    warped = cv2.warpPerspective(photo.scaled(scale), to_reference, region.shape[::-1], flags=cv2.INTER_LINEAR)
    return reference.view.scaled(scale)[region], warped[region]


def _visible_share(photo: View, reference: ReferenceFeatures, homography: np.ndarray, recipe: AlignmentRecipe) -> float:
    """The share of the reference's product region that the photo shows."""
    scale, _, region = _seen_region(photo, reference, homography, recipe)
    return float(region.sum()) / max(1, int(reference.scaled_mask(scale).sum()))


def _seen_region(photo: View, reference: ReferenceFeatures, homography: np.ndarray,
                 recipe: AlignmentRecipe) -> tuple[float, np.ndarray, np.ndarray]:
    """At ``recipe.correlation_side``: the scale, the photo -> reference warp and the reference's product
    region that falls inside the photo (the photo's own small size: past its edge nothing is seen)."""
    scale = min(1.0, recipe.correlation_side / max(reference.view.shape))
    s = np.diag([scale, scale, 1.0])
    to_reference = s @ homography @ np.linalg.inv(s)
    product = reference.scaled_mask(scale)
    seen = cv2.warpPerspective(np.ones(photo.scaled(scale).shape[:2], np.uint8), to_reference, product.shape[::-1],
                               flags=cv2.INTER_NEAREST) > 0
    return scale, to_reference, product & seen


def _coarse_placement(photo: View, reference: ReferenceFeatures, recipe: AlignmentRecipe) -> tuple[float, np.ndarray] | None:
    """The best normalised colour correlation over a grid of rotations and scales of the reference's
    product (its background filled with its mean colour, so it does not correlate), at
    ``recipe.dense_coarse_side``, and its photo -> reference similarity transform."""
    scale = recipe.dense_coarse_side / max(reference.view.shape)
    product = reference.view.scaled(scale)
    mask = reference.scaled_mask(scale)
    if mask.sum() < _MIN_TEMPLATE_PIXELS:
        return None
    photo_small = photo.scaled(scale)
    x0, y0, x1, y1 = bounding_box(mask)
    centre, diagonal = ((x0 + x1) / 2, (y0 + y1) / 2), float(np.hypot(x1 - x0, y1 - y0))
    angles = np.arange(-recipe.dense_max_turn, recipe.dense_max_turn + 1e-6, recipe.dense_turn_step)
    best_score, best = -np.inf, None
    for zoom in np.geomspace(*recipe.dense_zoom_range, recipe.dense_zooms):
        size = int(np.ceil(diagonal * zoom)) + 2
        pad = int(size * recipe.dense_overhang)  # the product may reach past the photo's edge by this much
        padded = cv2.copyMakeBorder(photo_small, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        if size >= min(padded.shape[:2]):
            continue
        for angle in angles:
            affine = cv2.getRotationMatrix2D(centre, float(angle), float(zoom))
            affine[:, 2] += (size / 2 - centre[0], size / 2 - centre[1])
            template = cv2.warpAffine(product, affine, (size, size), flags=cv2.INTER_LINEAR)
            inside = cv2.warpAffine(mask.astype(np.uint8), affine, (size, size), flags=cv2.INTER_NEAREST) > 0
            if inside.sum() < _MIN_TEMPLATE_PIXELS:
                continue
            template[~inside] = template[inside].mean(axis=0)
            scores = cv2.matchTemplate(padded, template, cv2.TM_CCOEFF_NORMED)
            _, score, _, (x, y) = cv2.minMaxLoc(np.nan_to_num(scores, nan=-1.0))
            if score > best_score:
                shift = np.array([[1, 0, x - pad], [0, 1, y - pad], [0, 0, 1.0]])
                best_score, best = score, shift @ np.vstack([affine, [0, 0, 1]])
    if best is None:
        return None
    s = np.diag([scale, scale, 1.0])
    to_photo = np.linalg.inv(s) @ best @ s  # reference working -> photo working
    return float(best_score), np.linalg.inv(to_photo)
