"""The alignment recipe: one place for every constant of aligned verification."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class AlignmentRecipe:
    # Stored reference features depend on these four: a change recomputes them from the originals.
    max_side: int = 640  # working resolution: the longer side, in pixels (photos are never upscaled)
    max_keypoints: int = 1000
    contrast_threshold: float = 0.01  # SIFT's; low, because products are often plain and their detail faint
    features_version: int = 1
    # Matching and geometry.
    candidates: int = 3  # the claimed brand's closest references by embedding that are tried
    ratio: float = 0.8  # Lowe's ratio test
    ransac_px: float = 4.0  # MAGSAC inlier threshold, in working-resolution pixels
    min_inliers: int = 8  # fewer geometric inliers: the photo is not aligned (another product scores 0-2)
    refine_side: int = 256  # the dense (ECC) refinement of the homography runs at this longer side
    refine_iterations: int = 20
    compared: int = 2  # aligned references compared at most (the most inliers first)
    compared_inliers: float = 0.5  # ... and only those with at least this share of the best one's inliers
    min_coverage: float = 0.3  # share of the reference's product region the warped photo must cover
    # Comparison in the reference's frame.
    grid: int = 8  # blocks per side of the product's bounding box
    blur_sigma: float = 1.5  # smooths noise before differences
    shift_px: int = 2  # differences are the smallest over shifts of up to this (residual misalignment)
    colour_unit: float = 12.0  # a block's Lab difference (dE) counted as one unit of block score
    structure_unit: float = 0.5  # a block's 1 - NCC counted as one unit of block score
    # full heat: a block standing out as much as in the top 1% of aligned genuine photos (block peak 6.3 on the
    # synthetic calibration set, 6.5 on grocery-store)
    heat_unit: float = 6.5
    heatmap_cells: int = 12  # heatmap grid cells along the photo's longer side

    @property
    def features_fingerprint(self) -> str:
        """Names the stored reference features this recipe reads (and computes when they are missing)."""
        keys = {"max_side": self.max_side, "max_keypoints": self.max_keypoints,
                "contrast_threshold": self.contrast_threshold, "version": self.features_version}
        return "sift-" + hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:10]

    def to_dict(self) -> dict:
        return asdict(self)


DEFAULT_RECIPE = AlignmentRecipe()
