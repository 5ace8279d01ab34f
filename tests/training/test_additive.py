"""Additive fusions: a monotone shape per signal, fitted by boosting (``training.additive``)."""

from __future__ import annotations

import numpy as np

from detector.evaluation.metrics import roc_auc
from detector.model_folder import Calibration, load_model
from training.calibrate import fit_calibration, write_calibrated_model


def _photos(rng, n: int) -> list[dict]:
    """Genuine photos of studio references differ little; counterfeits differ moderately; genuine photos
    of cluttered references differ a lot, but their embedding evidence says genuine (a high margin)."""
    rows = []
    for _ in range(n):
        label = int(rng.random() < 0.4)
        cluttered = not label and rng.random() < 0.3
        spot = rng.uniform(60, 200) if cluttered else rng.uniform(20, 60) if label else rng.uniform(0, 25)
        margin = rng.normal(0.12 if cluttered else 0.0, 0.03)
        rows.append({"label": label, "aligned": True, "brand_similarity": 0.8, "brand_margin": margin,
                     "other_brand_similarity": 0.8 - margin, "aligned_spot_peak": spot,
                     "aligned_block_peak": rng.normal(1.0, 0.3)})
    return rows


def test_a_signal_whose_evidence_levels_off_is_shaped_and_separates_better_than_one_weight():
    rng = np.random.default_rng(0)
    fit, judged = _photos(rng, 1500), _photos(rng, 1500)
    labels = [r["label"] for r in judged]
    auc = {}
    for fusion in ("linear", "additive"):
        calibration = fit_calibration(fit, ["brand_margin"], aligned_features=["aligned_spot_peak"], fusion=fusion)
        auc[fusion] = roc_auc(labels, [calibration.fuse(r, aligned=True) for r in judged])
    assert auc["additive"] > auc["linear"] + 0.05
    shape = calibration.aligned.shapes["aligned_spot_peak"]
    # it rises where counterfeits begin and no further past where they end
    assert shape(40) - shape(10) > 1.0 and abs(shape(180) - shape(70)) < 0.5 * (shape(40) - shape(10))


def test_every_shape_turns_the_way_its_signal_points():
    rng = np.random.default_rng(1)
    rows = _photos(rng, 800)
    for r in rows:  # a similarity that is higher for counterfeits: physically meaningless, must stay flat
        r["brand_similarity"] = rng.normal(0.9 if r["label"] else 0.7, 0.05)
    calibration = fit_calibration(rows, ["brand_similarity", "brand_margin"], aligned_features=["aligned_spot_peak"],
                                  fusion="additive")
    assert len(set(calibration.shapes["brand_similarity"].values)) == 1
    for name, shape in calibration.aligned.shapes.items():
        assert shape.problem(name) is None


def test_a_photo_that_does_not_align_gets_what_missing_alignment_evidence_added(tmp_path, zero_shot):
    rng = np.random.default_rng(2)
    rows = _photos(rng, 1200)
    for r in rows:  # counterfeits fail to align more often (40% against 5%)
        if rng.random() < (0.4 if r["label"] else 0.05):
            r["aligned"], r["aligned_spot_peak"], r["aligned_block_peak"] = False, None, None
    calibration = fit_calibration(rows, ["brand_similarity", "brand_margin"], aligned_features=["aligned_spot_peak"],
                                  fusion="additive")
    unaligned, aligned = calibration.embedding_fusion, calibration.aligned
    assert aligned.shapes["brand_margin"] == unaligned.shapes["brand_margin"]
    typical = {"brand_similarity": 0.8, "brand_margin": 0.0}
    assert unaligned.score(typical) > aligned.score({**typical, "aligned_spot_peak": 10.0})
    # the shapes travel in calibration.json, and a model folder with them loads and scores alike
    assert Calibration.from_dict(calibration.to_dict(), source="round trip") == calibration
    loaded = load_model(write_calibrated_model(zero_shot, calibration, tmp_path / "additive")).calibration
    photo = {**typical, "aligned_spot_peak": 45.0}
    assert loaded.fuse(photo, aligned=True) == calibration.fuse(photo, aligned=True)
