"""A listing photo's homography onto a reference: ratio-test matches, then MAGSAC."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from detector.alignment.dense import plausible
from detector.alignment.features import View
from detector.alignment.recipe import AlignmentRecipe


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
    if homography is None or not plausible(homography):
        return Alignment(None, 0, len(good))
    return Alignment(homography, int(inlier_mask.sum()), len(good))
