"""Ranking metrics for binary scores (1 = counterfeit), in plain numpy. Ties count half."""

from __future__ import annotations

import numpy as np


def _validate(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.shape != scores.shape or labels.ndim != 1:
        raise ValueError("labels and scores must be 1-D arrays of the same length")
    return labels, scores


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values``; tied values share the mean of the ranks they span."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    last = np.cumsum(counts)
    return ((last - counts + 1 + last) / 2.0)[inverse]


def roc_auc(labels, scores) -> float | None:
    """Probability that a random positive outscores a random negative (Mann-Whitney U)."""
    labels, scores = _validate(labels, scores)
    n_pos, n_neg = int(labels.sum()), int((1 - labels).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    u = average_ranks(scores)[labels == 1].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def roc_curve(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds), starting at (0, 0); one point per distinct score."""
    labels, scores = _validate(labels, scores)
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    distinct = np.where(np.diff(scores))[0]
    cut = np.r_[distinct, len(scores) - 1]
    tps = np.cumsum(labels)[cut]
    fps = (cut + 1) - tps
    n_pos, n_neg = max(int(labels.sum()), 1), max(int((1 - labels).sum()), 1)
    fpr = np.r_[0.0, fps / n_neg]
    tpr = np.r_[0.0, tps / n_pos]
    return fpr, tpr, np.r_[np.inf, scores[cut]]


def average_precision(labels, scores) -> float | None:
    """Area under the precision-recall curve as a step sum over distinct thresholds."""
    labels, scores = _validate(labels, scores)
    n_pos = int(labels.sum())
    if n_pos == 0:
        return None
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    cut = np.r_[np.where(np.diff(scores))[0], len(scores) - 1]
    tps = np.cumsum(labels)[cut]
    precision = tps / (cut + 1)
    recall = tps / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def tpr_at_fpr(labels, scores, target_fpr: float) -> float | None:
    """Highest TPR reachable at a threshold whose FPR does not exceed ``target_fpr``."""
    labels, _ = _validate(labels, scores)
    if labels.sum() == 0 or (1 - labels).sum() == 0:
        return None
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(tpr[fpr <= target_fpr + 1e-12].max())


def threshold_at_fpr(labels, scores, target_fpr: float) -> float:
    """Lowest score threshold (score >= t flags) whose FPR on negatives is at most ``target_fpr``."""
    labels, scores = _validate(labels, scores)
    negatives = np.sort(scores[labels == 0])[::-1]
    if len(negatives) == 0:
        return float(scores.min()) if len(scores) else 0.5
    allowed = int(np.floor(target_fpr * len(negatives)))
    # flagging scores strictly above the (allowed+1)-th highest negative keeps FPR <= target
    if allowed >= len(negatives):
        return float(negatives[-1])
    return float(np.nextafter(negatives[allowed], np.inf))


def confusion(labels, verdicts: list[str]) -> dict[str, dict[str, int]]:
    labels = np.asarray(labels, dtype=np.int64)
    table: dict[str, dict[str, int]] = {"genuine": {}, "counterfeit": {}}
    for label, verdict in zip(labels.tolist(), verdicts):
        row = table["counterfeit" if label else "genuine"]
        row[verdict] = row.get(verdict, 0) + 1
    return table


def _resamples(labels: np.ndarray, resamples: int, seed: int):
    """Bootstrap resamples of photo indices, genuine and counterfeit photos resampled separately."""
    positives, negatives = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    rng = np.random.default_rng(seed)
    for _ in range(resamples):
        yield np.r_[rng.choice(positives, len(positives)), rng.choice(negatives, len(negatives))]


def auc_interval(labels, scores, *, resamples: int = 1000, seed: int = 0) -> dict:
    """ROC-AUC with a 95% bootstrap interval."""
    labels, scores = np.asarray(labels, dtype=np.int64), np.asarray(scores, np.float64)
    if not (labels == 1).any() or not (labels == 0).any():
        return {"roc_auc": None, "ci95": None, "resamples": 0}
    values = [roc_auc(labels[pick], scores[pick]) for pick in _resamples(labels, resamples, seed)]
    low, high = np.percentile(values, [2.5, 97.5])
    return {"roc_auc": roc_auc(labels, scores), "ci95": [float(low), float(high)], "resamples": resamples}


def paired_auc_difference(labels, ours, theirs, *, resamples: int = 1000, seed: int = 0) -> dict:
    """ROC-AUC of ``ours`` minus ``theirs`` on the same photos, with a 95% paired bootstrap interval
    (genuine and counterfeit photos resampled separately, both models on the same resample)."""
    labels = np.asarray(labels, dtype=np.int64)
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    if not (labels == 1).any() or not (labels == 0).any():
        return {"difference": None, "ci95": None, "resamples": 0}
    differences = [roc_auc(labels[pick], ours[pick]) - roc_auc(labels[pick], theirs[pick])
                   for pick in _resamples(labels, resamples, seed)]
    low, high = np.percentile(differences, [2.5, 97.5])
    return {"difference": roc_auc(labels, ours) - roc_auc(labels, theirs), "ci95": [float(low), float(high)],
            "resamples": resamples}
