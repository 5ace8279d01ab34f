"""Fit an additive fusion: each signal passes through its own shape (a monotone step function,
``detector.fusion.Shape``) before the logistic sum. The shapes are fitted together by gradient
boosting of stumps on each signal's quantile bins (class-balanced logistic loss, Newton steps), and
a stump may only split in the direction the signal points, so every shape is monotone.

Why: one weight per signal must serve photos of every kind at once. On the aligned-verification
study's rows, the linear weight of ``aligned_spot_peak`` stayed small because cluttered in-store
references give genuine photos very large spots; a shape can rise over the range where studio
references put counterfeits and level off beyond it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from detector.errors import InvalidInputError
from detector.fusion import Fusion, Shape
from detector.signals import signal
from training.balance import class_balanced

BINS = 32  # quantile bins per signal: the most steps a shape can have
ITERATIONS = 500
RATE = 0.05  # shrinkage of each stump
L2 = 1.0  # on each leaf's Newton step
MIN_LEAF = 0.02  # a split leaves at least this share of the (class-balanced) weight on either side


def fit_additive_fusions(rows: list[dict[str, Any]], features: list[str],
                         aligned_features: list[str]) -> tuple[Fusion, Fusion | None]:
    """The two fusions as ``training.calibrate.fit_aligned_fusions`` returns them, each signal through its
    shape (weight 1): the alignment signals of a photo that did not align are missing, and what missing
    adds becomes the bias of the embedding fusion, the one such photos get. Without ``aligned_features``
    there is no aligned fusion."""
    aligned = np.array([bool(r.get("aligned")) for r in rows])
    x = np.array([[_value(r, f) for f in features] + [_value(r, f) if ok else np.nan for f in aligned_features]
                  for r, ok in zip(rows, aligned)], np.float64).reshape(len(rows), len(features) + len(aligned_features))
    if np.isnan(x[:, : len(features)]).any():
        raise InvalidInputError(f"every photo needs {features} for the embedding fusion")
    y = np.array([int(r["label"]) for r in rows], np.float64)
    if len(np.unique(y)) < 2:
        raise InvalidInputError("calibration needs both genuine and counterfeit examples")
    names = [*features, *aligned_features]
    edges = [_edges(x[:, j]) for j in range(len(names))]
    codes = np.stack([_codes(x[:, j], edges[j]) for j in range(len(names))], axis=1)
    values = _boost(codes, y, [len(e) for e in edges], np.array([signal(f).sign for f in names]))
    # each shape centred on the photos it was fitted on (what it adds on average goes to the bias)
    present = [~np.isnan(x[:, j]) for j in range(len(names))]
    offsets = [float(values[j][codes[present[j], j]].mean()) if present[j].any() else 0.0 for j in range(len(names))]
    shapes = {name: _shape(edges[j], values[j][:-1] - offsets[j]) for j, name in enumerate(names)}
    bias = sum(offsets)
    missing = sum(values[j][-1] - offsets[j] for j in range(len(features), len(names)))
    embedding = Fusion(tuple(features), (1.0,) * len(features), round(bias + missing, 6), {f: shapes[f] for f in features})
    if not aligned_features:
        return embedding, None
    return embedding, Fusion(tuple(names), (1.0,) * len(names), round(bias, 6), shapes)


def _value(row: dict[str, Any], name: str) -> float:
    value = row.get(name)
    return np.nan if value is None else float(value)


def _edges(column: np.ndarray) -> np.ndarray:
    """Bin edges at the column's quantiles (its missing values left out)."""
    present = column[~np.isnan(column)]
    if not len(present):
        return np.zeros(0)
    return np.unique(np.quantile(present, np.linspace(0, 1, BINS + 1)[1:-1]))


def _codes(column: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Each value's bin (bin i: edges[i - 1] <= x < edges[i], as ``Shape`` reads it); missing: the last code."""
    missing = np.isnan(column)
    return np.where(missing, len(edges) + 1, np.searchsorted(edges, np.where(missing, 0.0, column), side="right"))


def _boost(codes: np.ndarray, y: np.ndarray, sizes: list[int], signs: np.ndarray) -> list[np.ndarray]:
    """Per signal, the value of each bin and (last) of a missing value."""
    weight = class_balanced(y)
    smallest = MIN_LEAF * weight.sum()
    values = [np.zeros(size + 2) for size in sizes]
    logit = np.zeros(len(y))
    for _ in range(ITERATIONS):
        p = 1.0 / (1.0 + np.exp(-np.clip(logit, -30, 30)))
        g, h = weight * (p - y), weight * p * (1 - p)
        best = None
        for j, size in enumerate(sizes):
            n = size + 2
            gs, hs, ws = (np.bincount(codes[:, j], v, n) for v in (g, h, weight))
            cg, ch, cw = np.cumsum(gs[:-1]), np.cumsum(hs[:-1]), np.cumsum(ws[:-1])
            gl, hl, wl = cg[:-1], ch[:-1], cw[:-1]  # split after bin k: bins <= k on the left
            gr, hr, wr = cg[-1] - gl, ch[-1] - hl, cw[-1] - wl
            left, right = -gl / (hl + L2), -gr / (hr + L2)
            allowed = (wl >= smallest) & (wr >= smallest) & (signs[j] * (right - left) >= 0)
            if not allowed.any():
                continue
            gain = np.where(allowed, gl**2 / (hl + L2) + gr**2 / (hr + L2), -np.inf)
            k = int(np.argmax(gain))
            total = float(gain[k]) + gs[-1] ** 2 / (hs[-1] + L2)
            if best is None or total > best[0]:
                best = (total, j, k, left[k], right[k], -gs[-1] / (hs[-1] + L2))
        if best is None:
            break
        _, j, k, left_value, right_value, missing_value = best
        values[j][: k + 1] += RATE * left_value
        values[j][k + 1: -1] += RATE * right_value
        values[j][-1] += RATE * missing_value
        logit = sum(values[t][codes[:, t]] for t in range(len(sizes)))
    return values


def _shape(edges: np.ndarray, values: np.ndarray) -> Shape:
    """A step function of rounded values, adjacent bins of equal value merged."""
    rounded = np.round(values, 6)
    keep = np.r_[True, rounded[1:] != rounded[:-1]]
    return Shape(tuple(float(e) for e in edges[keep[1:]]), tuple(float(v) for v in rounded[keep]))
