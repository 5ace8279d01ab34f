"""The signal table: every per-photo signal's name, meaning, direction and what a model needs to
produce it. Scoring computes them, calibration constrains their weights by ``sign``, model loading
rejects a calibration that names a signal the model cannot produce, and reports orient them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Signal:
    name: str
    meaning: str
    # +1: a higher value means more likely counterfeit; -1: more likely genuine. Calibration keeps the
    # fused weight on this side of zero, so the score stays monotonic in what the signal means.
    sign: int
    # None: every model produces it; otherwise the model part it needs ("head", "patch_head")
    requires: str | None = None

    def oriented(self, value: float) -> float:
        """The value turned so that higher means more likely counterfeit."""
        return self.sign * value


SIGNALS: dict[str, Signal] = {s.name: s for s in (
    Signal("brand_similarity", "cosine similarity to the closest reference of the claimed brand", -1),
    Signal("brand_topk_similarity", "mean similarity to the claimed brand's top_k closest references", -1),
    Signal("other_brand_similarity", "similarity to the closest reference of any other brand", +1),
    Signal("brand_margin", "brand_similarity minus other_brand_similarity", -1),
    Signal("head_logit", "logit of the model's genuine-versus-counterfeit head", +1, requires="head"),
    Signal("patch_anomaly", "attention-weighted share of the closest references' parts with no match in the photo", +1,
           requires="patch_head"),
    # aligned verification (detector.alignment): the photo against its best-aligned reference of the claimed brand
    Signal("align_inliers", "log(1 + geometric inliers) of the homography onto the best-aligned reference", -1),
    Signal("align_inlier_ratio", "share of ratio-test matches that are geometric inliers", -1),
    Signal("align_correlation", "colour correlation of the aligned photo with the reference inside its product region", -1),
    Signal("aligned_colour_diff", "median block colour difference (Lab dE) after lighting normalisation", +1),
    Signal("aligned_diff_area", "share of the product's pixels whose colour differs clearly (Lab dE) from the reference's", +1),
    Signal("aligned_structure_diff", "mean block structure difference (1 - NCC of lightness)", +1),
    Signal("aligned_block_peak", "the most different block's score above the photo's median block", +1),
    Signal("aligned_spot_peak", "the most different small window's colour difference (Lab dE) above the product's median", +1),
    Signal("placement_shift", "how far the label sits from where the product's geometry puts it (share of the diagonal)", +1),
    Signal("label_mismatch", "1 - NCC of the label against the reference's, at its best local position", +1),
    Signal("detail_loss", "fine detail (high-frequency energy) lost in the photo's weakest blocks against its median", +1),
)}
# Signals that compare with another brand: a single-brand gallery needs the calibration's stand-in.
OTHER_BRAND_SIGNALS = frozenset({"other_brand_similarity", "brand_margin"})
# Signals of aligned verification: only a calibration's aligned fusion may use them (a photo that is
# not aligned, or a check without alignment, is scored by the embedding fusion alone).
ALIGNMENT_SIGNALS = frozenset({"align_inliers", "align_inlier_ratio", "align_correlation", "aligned_colour_diff", "aligned_diff_area",
                               "aligned_structure_diff", "aligned_block_peak", "aligned_spot_peak", "placement_shift", "label_mismatch", "detail_loss"})


def signal(name: str) -> Signal:
    try:
        return SIGNALS[name]
    except KeyError:
        raise KeyError(f"unknown signal {name!r}; known signals: {', '.join(SIGNALS)}") from None


def produced_signals(*, head: bool, patch_head: bool) -> frozenset[str]:
    """The signals a model with (or without) a head and a patch head produces."""
    parts = {None, *(["head"] if head else []), *(["patch_head"] if patch_head else [])}
    return frozenset(s.name for s in SIGNALS.values() if s.requires in parts)
