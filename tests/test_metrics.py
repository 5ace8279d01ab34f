"""Metrics against values computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from detector.evaluation.metrics import average_precision, confusion, roc_auc, threshold_at_fpr, tpr_at_fpr


def test_auc_and_ap_on_the_textbook_example():
    labels, scores = [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]
    # pairs (pos, neg): (0.35>0.1) (0.35<0.4) (0.8>0.1) (0.8>0.4) -> 3/4
    assert roc_auc(labels, scores) == pytest.approx(0.75)
    # ranks: 0.8 (P) 0.4 (N) 0.35 (P) 0.1 (N): precision 1 at recall .5, 2/3 at recall 1
    assert average_precision(labels, scores) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)


def test_ties_count_half():
    assert roc_auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)
    assert roc_auc([0, 0, 1], [0.2, 0.5, 0.5]) == pytest.approx((1 + 0.5) / 2)


def test_single_class_has_no_auc():
    assert roc_auc([1, 1], [0.1, 0.2]) is None
    assert tpr_at_fpr([0, 0], [0.1, 0.2], 0.01) is None


def test_tpr_at_fpr():
    labels = [0, 0, 0, 0, 1, 1]
    scores = [0.1, 0.2, 0.3, 0.9, 0.8, 0.95]
    assert tpr_at_fpr(labels, scores, 0.0) == pytest.approx(0.5)  # only 0.95 beats every negative
    assert tpr_at_fpr(labels, scores, 0.25) == pytest.approx(1.0)  # allowing 0.9 catches 0.8 too


def test_threshold_at_fpr_keeps_the_rate():
    labels = [0, 0, 0, 0, 1]
    scores = [0.1, 0.2, 0.3, 0.9, 0.5]
    t = threshold_at_fpr(labels, scores, 0.25)
    assert 0.3 < t <= 0.5  # flags 0.9 (1 of 4 negatives = 25%) and the positive 0.5
    t0 = threshold_at_fpr(labels, scores, 0.0)
    assert 0.9 < t0  # no negative may be flagged


def test_confusion_counts():
    table = confusion([0, 0, 1, 1, 1], ["genuine", "suspicious", "counterfeit", "genuine", "counterfeit"])
    assert table == {"genuine": {"genuine": 1, "suspicious": 1}, "counterfeit": {"counterfeit": 2, "genuine": 1}}


@pytest.mark.parametrize("seed", range(5))
def test_ranking_metrics_match_scikit_learn(seed):
    """Vectorised ranks against scikit-learn as an oracle, with many ties (scores rounded to a coarse grid)."""
    from sklearn import metrics as sklearn_metrics

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 500)
    scores = np.round(rng.normal(labels * 0.7, 1.0), 1)
    assert roc_auc(labels, scores) == pytest.approx(sklearn_metrics.roc_auc_score(labels, scores), abs=1e-12)
    assert average_precision(labels, scores) == pytest.approx(sklearn_metrics.average_precision_score(labels, scores), abs=1e-12)


def test_auc_interval_holds_the_auc_and_narrows_with_more_photos():
    from detector.evaluation.metrics import auc_interval

    rng = np.random.default_rng(0)

    def interval(n):
        labels = np.r_[np.zeros(n), np.ones(n)]
        return auc_interval(labels, labels + rng.normal(0, 1.0, 2 * n), resamples=300)

    small, large = interval(30), interval(600)
    for result in (small, large):
        assert result["ci95"][0] <= result["roc_auc"] <= result["ci95"][1]
    assert large["ci95"][1] - large["ci95"][0] < 0.5 * (small["ci95"][1] - small["ci95"][0])
    assert auc_interval([0, 0, 0], [0.1, 0.2, 0.3]) == {"roc_auc": None, "ci95": None, "resamples": 0}
