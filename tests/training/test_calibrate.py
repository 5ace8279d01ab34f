from __future__ import annotations

import numpy as np
import pytest

from detector.evaluation.metrics import roc_auc
from training.calibrate import fit_calibration, fit_logistic


def _rows(rng, n=400):
    rows = []
    for label in (0, 1):
        margin = rng.normal(0.05 if label == 0 else -0.08, 0.05, n)
        sim = rng.normal(0.75, 0.05, n)
        for m, s in zip(margin, sim):
            rows.append({"label": label, "brand_margin": m, "brand_similarity": s,
                         "other_brand_similarity": s - m})
    return rows


def test_fit_separates_and_is_monotonic():
    rows = _rows(np.random.default_rng(0))
    calibration = fit_calibration(rows, ["brand_similarity", "brand_margin"])
    weights = dict(zip(calibration.features, calibration.weights))
    assert weights["brand_margin"] < 0 and weights["brand_similarity"] <= 0
    margins = np.linspace(-0.3, 0.3, 50)
    scores = [calibration.fuse({"brand_similarity": 0.7, "brand_margin": m}) for m in margins]
    assert all(a >= b for a, b in zip(scores, scores[1:]))  # more margin, never a higher score
    assert scores[0] > 0.9 and scores[-1] < 0.1


def test_thresholds_meet_their_fpr_targets():
    rows = _rows(np.random.default_rng(1))
    calibration = fit_calibration(rows, ["brand_margin"], suspicious_fpr=0.05, counterfeit_fpr=0.01)
    genuine = [calibration.fuse(r) for r in rows if r["label"] == 0]
    assert calibration.suspicious_threshold <= calibration.counterfeit_threshold
    assert np.mean(np.array(genuine) >= calibration.suspicious_threshold) <= 0.05
    assert np.mean(np.array(genuine) >= calibration.counterfeit_threshold) <= 0.01
    assert calibration.default_other_similarity == pytest.approx(np.median([r["other_brand_similarity"] for r in rows if r["label"] == 0]), abs=1e-6)


def test_sign_constraint_drops_a_feature_that_fits_backwards():
    rng = np.random.default_rng(2)
    y = np.r_[np.zeros(200), np.ones(200)]
    # similarity that is *higher* for counterfeits: physically meaningless, must not be used
    x = np.c_[np.r_[rng.normal(0.5, 0.1, 200), rng.normal(0.7, 0.1, 200)], rng.normal(0, 1, 400)]
    weights, _ = fit_logistic(x, y, signs=np.array([-1, 0]))
    assert weights[0] == 0.0


def test_aligned_fusions_are_fitted_together_and_a_failure_to_align_counts_against_a_photo():
    rng = np.random.default_rng(3)
    rows = _rows(rng)
    for r in rows:  # counterfeits align less often (30% against 5% fail); those that align differ more
        r["aligned"] = rng.random() > (0.3 if r["label"] else 0.05)
        r["aligned_diff_area"] = rng.normal(0.10 if r["label"] else 0.03, 0.02) if r["aligned"] else float("nan")
        r["aligned_block_peak"] = rng.normal(1.0, 0.3) if r["aligned"] else float("nan")
    calibration = fit_calibration(rows, ["brand_margin"], aligned_features=["aligned_diff_area"])
    unaligned, aligned = calibration.embedding_fusion, calibration.aligned
    assert aligned.features == ("brand_margin", "aligned_diff_area") and aligned.weights[0] == unaligned.weights[0]
    assert aligned.weights[1] > 0
    # with the same embedding evidence, no alignment scores like a photo that aligned and differs a little
    typical = {"brand_margin": 0.0}
    assert unaligned.score(typical) > aligned.score({**typical, "aligned_diff_area": 0.03})
    assert unaligned.bias > aligned.bias
    # one scale: fused with the fusion a check uses, it separates better than the embedding evidence alone
    labels = [r["label"] for r in rows]
    fused = [calibration.fuse(r, aligned=r["aligned"]) for r in rows]
    assert roc_auc(labels, fused) > roc_auc(labels, [-r["brand_margin"] for r in rows]) + 0.02


def test_one_class_is_an_error():
    with pytest.raises(ValueError):
        fit_logistic(np.zeros((4, 1)), np.zeros(4))


def test_patch_anomaly_only_raises_the_score_and_sets_its_flag_threshold():
    rng = np.random.default_rng(3)
    rows = _rows(rng)
    for r in rows:
        r["patch_anomaly"] = rng.normal(0.30 if r["label"] else 0.25, 0.03)
    calibration = fit_calibration(rows, ["brand_margin", "patch_anomaly"])
    assert dict(zip(calibration.features, calibration.weights))["patch_anomaly"] > 0
    anomalies = np.linspace(0.0, 0.6, 40)
    scores = [calibration.fuse({"brand_margin": 0.0, "patch_anomaly": a}) for a in anomalies]
    assert all(a <= b for a, b in zip(scores, scores[1:]))  # more anomaly, never a lower score
    genuine = [r["patch_anomaly"] for r in rows if r["label"] == 0]
    assert calibration.high_patch_anomaly == pytest.approx(np.percentile(genuine, 95), abs=1e-6)


def test_calibration_goes_into_a_new_model_folder_never_the_package(tmp_path, zero_shot):
    """Item 11: `cfd calibrate --write` overwrote the built-in model's calibration inside the package."""
    from dataclasses import replace

    from detector.errors import InvalidInputError
    from detector.model_folder import default_model_path, load_model
    from training.calibrate import write_calibrated_model

    shipped = (default_model_path() / "calibration.json").read_bytes()
    calibration = replace(zero_shot.calibration, suspicious_threshold=0.3, counterfeit_threshold=0.9)
    with pytest.raises(InvalidInputError, match="installed package"):
        write_calibrated_model(zero_shot, calibration, default_model_path().parent / "mine")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("someone's")
    with pytest.raises(InvalidInputError, match="not empty"):
        write_calibrated_model(zero_shot, calibration, tmp_path / "taken")
    folder = write_calibrated_model(zero_shot, calibration, tmp_path / "recalibrated")
    assert load_model(folder).calibration.suspicious_threshold == 0.3
    assert (default_model_path() / "calibration.json").read_bytes() == shipped
