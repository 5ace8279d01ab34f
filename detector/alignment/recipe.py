"""The alignment recipe: one place for every constant of aligned verification."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class EccStage:
    """One ECC refinement over the reference's product region, at ``side`` pixels (the reference's
    longer side), in colour or grey."""

    side: int
    motion: str  # "affine" or "homography"
    colour: bool
    iterations: int  # at most
    min_gain: float  # ECC stops when an iteration raises its correlation by less than this


@dataclass(frozen=True)
class AlignmentRecipe:
    # Stored reference features depend on these four: a change recomputes them from the originals.
    max_side: int = 640  # working resolution: the longer side, in pixels (photos are never upscaled)
    max_keypoints: int = 1000
    contrast_threshold: float = 0.01  # SIFT's; low, because products are often plain and their detail faint
    features_version: int = 1
    # Matching and geometry.
    # The claimed brand's closest references by embedding that are tried. Five, not three: the photo's own
    # colourway is more often among them (on the synthetic benchmark, genuine photos aligned 85% against 80%,
    # subtle counterfeit kinds 75-86% against 64-78%).
    candidates: int = 5
    ratio: float = 0.8  # Lowe's ratio test
    ransac_px: float = 4.0  # MAGSAC inlier threshold, in working-resolution pixels
    min_inliers: int = 8  # fewer geometric inliers: the photo is not aligned (another product scores 0-2)
    # ECC refines a homography densely (every product pixel, not a few keypoints). In colour: on the tests'
    # plain product blurred by 3 px (seeds 1-3), grey ended 4-34 px from the exact fit, colour 6-17 px. At 160 px
    # it is as close as at 192 px (0.63 against 0.64 px median on the detailed product) in 40% of the time.
    # Stopping once an iteration gains under 0.01: grocery-store's keypoint fits took 12 ms each against 36, ending
    # at a mean correlation of 0.60 against 0.58 (the detailed product: 0.73 against 0.65 px from the exact fit).
    refine: EccStage = EccStage(side=160, motion="homography", colour=True, iterations=20, min_gain=0.01)
    # Dense alignment (no keypoints) where keypoints do not align: the closest reference first, the others if it fails.
    dense_coarse_side: int = 48  # the coarse search runs at this longer side of the reference
    dense_max_turn: float = 30.0  # degrees either way
    # 5 turns x 5 zooms: on the synthetic benchmark as many photos aligned as with 7 x 6 (within two of 36 per
    # kind), and the search took 13 ms a candidate against 17.
    dense_turn_step: float = 15.0
    dense_zoom_range: tuple[float, float] = (0.45, 1.6)  # the product's size in the photo against the reference
    dense_zooms: int = 5
    dense_overhang: float = 0.3  # share of the product that may lie past the photo's edge
    dense_affine: EccStage = EccStage(side=128, motion="affine", colour=True, iterations=20, min_gain=1e-3)  # before ``refine``
    # A fit whose colour correlation with the reference inside its product region (at correlation_side,
    # on the correlation_keep share of pixels a per-channel gain explains best) is below
    # min_correlation is not a view of the reference's product.
    correlation_side: int = 128
    correlation_keep: float = 0.75
    min_correlation: float = 0.85
    compared: int = 2  # keypoint-aligned references weighed at most (the most inliers first); the best-correlating is compared
    compared_inliers: float = 0.5  # ... and only those with at least this share of the best one's inliers
    # Another candidate whose colours are closer than this share of the chosen fit's colour distance is the
    # photo's own colourway (the fit moves there). On the synthetic benchmark aligned genuine photos were compared
    # with their own colourway 91% of the time against 82% without the move (0.92: as many).
    colourway_margin: float = 0.8
    min_coverage: float = 0.3  # share of the reference's product region the warped photo must cover
    # Comparison in the reference's frame.
    grid: int = 8  # blocks per side of the product's bounding box
    blur_sigma: float = 1.5  # smooths noise before differences
    blur_steps: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0, 4.5, 6.0)  # the photo's extra blur is matched among these (pixels)
    shift_px: int = 2  # differences are the smallest over shifts of up to this (residual misalignment)
    # A pixel whose colour differs from the reference's by more than this (dE) counts towards aligned_diff_area.
    # 15, of 10, 15 and 20: alone on aligned synthetic photos it scored colour 0.815, logo 0.636, placement 0.792
    # against the median block difference's 0.778, 0.493, 0.670 (material, print and wordmark 0.01-0.02 lower),
    # and lookalikes on grocery-store 0.886 against 0.859 ROC-AUC.
    differing_delta_e: float = 15.0
    # aligned_spot_peak's window, as a share of the product's diagonal. Alone on aligned synthetic photos (with the
    # gain-only lighting fit of its time), 0.02 scored logo 0.800 against the block peak's 0.725 (0.01: 0.801,
    # 0.035: 0.789, 0.05: 0.759).
    spot_window: float = 0.02
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
