"""A listing photo's homography onto a reference: ratio-test matches, then MAGSAC."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from detector.alignment.features import View
from detector.alignment.recipe import AlignmentRecipe

# A homography that shrinks or grows the photo's area more than this, or bends it strongly, is a
# degenerate fit on a few collinear matches, not a view of the same product.
_AREA_RANGE = (1 / 25, 25.0)
_MAX_PERSPECTIVE = 2e-3


@dataclass(frozen=True)
class Alignment:
    homography: np.ndarray | None  # 3 x 3, photo working pixels -> reference working pixels; None: no fit
    inliers: int
    matches: int

    @property
    def inlier_ratio(self) -> float:
        return self.inliers / self.matches if self.matches else 0.0


def align(photo: View, reference: View, recipe: AlignmentRecipe) -> Alignment:
    if len(photo.points) < 4 or len(reference.points) < 4:
        return Alignment(None, 0, 0)
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(photo.float_descriptors, reference.float_descriptors, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < recipe.ratio * p[1].distance]
    if len(good) < 4:
        return Alignment(None, 0, len(good))
    source = photo.points[[m.queryIdx for m in good]]
    target = reference.points[[m.trainIdx for m in good]]
    homography, inlier_mask = cv2.findHomography(source, target, cv2.USAC_MAGSAC, recipe.ransac_px,
                                                 maxIters=2000, confidence=0.995)
    if homography is None or not _plausible(homography):
        return Alignment(None, 0, len(good))
    return Alignment(homography, int(inlier_mask.sum()), len(good))


def refine(photo: View, reference_bgr: np.ndarray, mask: np.ndarray, homography: np.ndarray, recipe: AlignmentRecipe) -> np.ndarray:
    """The homography refined densely (ECC, every product pixel rather than a few keypoints), at
    ``recipe.refine_side`` for speed; the keypoint homography when ECC does not converge."""
    scale = min(1.0, recipe.refine_side / max(reference_bgr.shape[:2]))
    s = np.diag([scale, scale, 1.0])
    small = lambda image: cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    template = small(cv2.cvtColor(reference_bgr, cv2.COLOR_BGR2GRAY)).astype(np.float32)
    target = cv2.resize(cv2.cvtColor(photo.bgr, cv2.COLOR_BGR2GRAY), None, fx=scale, fy=scale,
                        interpolation=cv2.INTER_AREA).astype(np.float32)
    template_mask = small(mask.astype(np.uint8))
    # ECC's warp maps template (reference) pixels to input (photo) pixels
    warp = (s @ np.linalg.inv(homography) @ np.linalg.inv(s)).astype(np.float32)
    warp /= warp[2, 2]
    try:
        _, warp = cv2.findTransformECC(template, target, warp, cv2.MOTION_HOMOGRAPHY,
                                       (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, recipe.refine_iterations, 1e-5),
                                       template_mask, 5)
    except cv2.error:
        return homography
    refined = np.linalg.inv(np.linalg.inv(s) @ warp.astype(np.float64) @ s)
    refined /= refined[2, 2]
    return refined if _plausible(refined) else homography


def _plausible(homography: np.ndarray) -> bool:
    area = float(np.linalg.det(homography[:2, :2])) / float(homography[2, 2]) ** 2
    return _AREA_RANGE[0] < area < _AREA_RANGE[1] and float(np.abs(homography[2, :2]).max()) < _MAX_PERSPECTIVE
