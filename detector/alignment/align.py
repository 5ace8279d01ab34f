"""A listing photo's homography onto a reference: ratio-test matches, then MAGSAC."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

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

    def holds(self, recipe: AlignmentRecipe) -> bool:
        """A fit with enough geometric inliers to count as a view of the reference."""
        return self.homography is not None and self.inliers >= recipe.min_inliers


def align(photo: View, reference: View, recipe: AlignmentRecipe) -> Alignment:
    if len(photo.points) < 4 or len(reference.points) < 4:
        return Alignment(None, 0, 0)
    query, train = ratio_matches(photo.float_descriptors, reference.float_descriptors, recipe.ratio)
    if len(query) < 4:
        return Alignment(None, 0, len(query))
    source, target = photo.points[query], reference.points[train]
    homography, inlier_mask = cv2.findHomography(source, target, cv2.USAC_MAGSAC, recipe.ransac_px,
                                                 maxIters=2000, confidence=0.995)
    if homography is None or not plausible(homography):
        return Alignment(None, 0, len(query))
    return Alignment(homography, int(inlier_mask.sum()), len(query))


def ratio_matches(query: np.ndarray, train: np.ndarray, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Lowe's ratio test on L2 nearest neighbours (``train`` has at least two rows): the query rows that
    pass and their nearest train rows. Brute force as one matrix product: the same matches as OpenCV's
    BFMatcher.knnMatch, at a quarter of its time on 1000 x 700 descriptors. In torch, whose threads the
    embedder already uses: numpy's OpenBLAS threads keep spinning after a product and slowed the
    next embedding by 2x."""
    q, t = torch.from_numpy(query), torch.from_numpy(train)
    squared = (t * t).sum(1)[None, :] - 2.0 * (q @ t.T)  # + |query|^2, added below: the same order
    two, nearest = squared.topk(2, dim=1, largest=False)
    distances = (two + (q * q).sum(1)[:, None]).clamp_min(0).sqrt()
    passed = (distances[:, 0] < ratio * distances[:, 1]).numpy()
    return np.nonzero(passed)[0], nearest[:, 0].numpy()[passed]
