"""Fit ``calibration.json``: logistic fusion of per-photo signals, thresholds at target FPRs.

The fit is class-balanced (the probability assumes equal priors) and sign-constrained: a
higher similarity to the claimed brand can only lower the counterfeit score, so the fused score
is monotonic in every similarity signal.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from detector.evaluation.metrics import threshold_at_fpr
from detector.errors import InvalidInputError
from detector.fsutil import atomic_write_bytes
from detector.fusion import Fusion
from detector.model_folder import (REQUIRED_FILES, WEIGHTS_FILE, Calibration, LoadedModel,
                                   default_model_path, load_model)
from detector.signals import ALIGNMENT_SIGNALS, SIGNALS, signal
from training.additive import fit_additive_fusions
from training.balance import class_balanced


def fit_logistic(x: np.ndarray, y: np.ndarray, *, l2: float = 1e-2, iterations: int = 100,
                 signs: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Class-balanced L2 logistic regression by Newton's method; ``signs`` (+1/-1/0) constrain weights."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if len(np.unique(y)) < 2:
        raise ValueError("calibration needs both genuine and counterfeit examples")
    mean, std = x.mean(0), x.std(0) + 1e-9
    z = (x - mean) / std
    sample_weight = class_balanced(y)
    active = np.ones(x.shape[1], bool)
    for _ in range(x.shape[1] + 1):
        w, b = np.zeros(active.sum()), 0.0
        za = z[:, active]
        for _ in range(iterations):
            p = 1 / (1 + np.exp(-np.clip(za @ w + b, -30, 30)))
            g = sample_weight * (p - y)
            grad = np.r_[za.T @ g / len(y) + l2 * w, g.mean()]
            h = sample_weight * p * (1 - p)
            design = np.c_[za, np.ones(len(y))]
            hessian = design.T @ (design * h[:, None]) / len(y) + np.diag(np.r_[np.full(active.sum(), l2), 0.0])
            step = np.linalg.solve(hessian, grad)
            w, b = w - step[:-1], b - step[-1]
            if np.abs(step).max() < 1e-8:
                break
        full = np.zeros(x.shape[1])
        full[active] = w
        if signs is None:
            break
        wrong = active & (np.sign(full) * signs < 0)
        if not wrong.any():
            break
        active &= ~wrong  # drop features that fit against their physical meaning, refit
    weights = full / std
    bias = b - float(np.sum(full * mean / std))
    return weights, float(bias)


def fit_fusion(rows: list[dict[str, Any]], features: list[str]) -> Fusion:
    """A class-balanced, sign-constrained logistic fusion of ``features`` on ``rows``."""
    x = np.array([[float(r[f]) for f in features] for r in rows])
    y = np.array([int(r["label"]) for r in rows])
    weights, bias = fit_logistic(x, y, signs=np.array([signal(f).sign for f in features]))
    return Fusion(tuple(features), tuple(round(float(w), 6) for w in weights), round(bias, 6))


def fit_aligned_fusions(rows: list[dict[str, Any]], features: list[str], aligned_features: list[str]) -> tuple[Fusion, Fusion]:
    """One class-balanced, sign-constrained logistic fit over every row, as a check with alignment scores
    them: ``aligned_features`` count where the photo aligned (0 where it did not), and a photo that did not
    align gets a bias of its own, which may only raise its score. So a failure to align is evidence too, and
    the two fusions' scores are on one scale. Returns (the fusion of photos that did not align: ``features``
    and that bias; the fusion of photos that aligned: ``features`` + ``aligned_features``)."""
    aligned = np.array([bool(r.get("aligned")) for r in rows])
    x = np.array([[float(r[f]) for f in features]
                  + [float(r[f]) if ok else 0.0 for f in aligned_features] + [0.0 if ok else 1.0]
                  for r, ok in zip(rows, aligned)])
    y = np.array([int(r["label"]) for r in rows])
    signs = np.array([signal(f).sign for f in [*features, *aligned_features]] + [1])
    weights, bias = fit_logistic(x, y, signs=signs)
    fitted = tuple(round(float(w), 6) for w in weights[:-1])
    unaligned_bias = round(bias + float(weights[-1]), 6)
    return (Fusion(tuple(features), fitted[: len(features)], unaligned_bias),
            Fusion((*features, *aligned_features), fitted, round(bias, 6)))


def validate_features(features: list[str], aligned_features: list[str] | None, *, produced: frozenset[str]) -> None:
    """The embedding fusion takes signals every photo has; the aligned fusion adds alignment signals only."""
    unknown = [f for f in [*features, *(aligned_features or [])] if f not in SIGNALS]
    if unknown:
        raise InvalidInputError(f"unknown signals {unknown}; known signals: {', '.join(SIGNALS)}")
    if not features:
        raise InvalidInputError("the embedding fusion needs at least one signal")
    unproduced = sorted(set(features) - produced - ALIGNMENT_SIGNALS)
    if unproduced:
        raise InvalidInputError(f"this model does not produce {unproduced} (it produces {sorted(produced)})")
    misplaced = sorted(set(features) & ALIGNMENT_SIGNALS)
    if misplaced:
        raise InvalidInputError(f"alignment signals {misplaced} belong in --aligned-features: the embedding fusion "
                                "scores photos that did not align")
    not_alignment = sorted(set(aligned_features or []) - ALIGNMENT_SIGNALS)
    if not_alignment:
        raise InvalidInputError(f"--aligned-features takes alignment signals only ({', '.join(sorted(ALIGNMENT_SIGNALS))}); "
                                f"{not_alignment} belong in --features")
    for name, given in (("--features", features), ("--aligned-features", aligned_features or [])):
        if len(set(given)) != len(given):
            raise InvalidInputError(f"{name} names a signal twice")


FUSIONS = ("linear", "additive")


def fit_calibration(rows: list[dict[str, Any]], features: list[str], *, aligned_features: list[str] | None = None,
                    fusion: str = "linear", suspicious_fpr: float = 0.05, counterfeit_fpr: float = 0.01, top_k: int = 3,
                    aggregation: str = "max", notes: str = "") -> Calibration:
    """Without ``aligned_features``, the embedding fusion is fitted on every row. With them, both fusions are
    fitted together (``fit_aligned_fusions``): the aligned one scores photos that aligned, the embedding one
    (with the bias of a photo that did not align) the others. ``fusion``: "linear" (a weight per signal) or
    "additive" (a monotone shape per signal, ``training.additive``). Thresholds come from both fusions, as a
    check uses them."""
    if fusion not in FUSIONS:
        raise InvalidInputError(f"fusion must be one of {FUSIONS}, not {fusion!r}")
    aligned_rows = [r for r in rows if r.get("aligned")]
    aligned = None
    if aligned_features and len({int(r["label"]) for r in aligned_rows}) < 2:
        raise InvalidInputError("no aligned fusion: the aligned photos are not both genuine and counterfeit")
    if fusion == "additive":
        embedding, aligned = fit_additive_fusions(rows, features, aligned_features or [])
    elif aligned_features:
        embedding, aligned = fit_aligned_fusions(rows, features, aligned_features)
    else:
        embedding = fit_fusion(rows, features)
    genuine = [r for r in rows if int(r["label"]) == 0]
    high_patch_anomaly = high_block_peak = None
    if "patch_anomaly" in features:
        # informational flag: above the 95th percentile of genuine photos' patch anomaly
        high_patch_anomaly = round(float(np.percentile([float(r["patch_anomaly"]) for r in genuine], 95)), 6)
    if aligned is not None:
        # informational flag: a block standing out more than in 95% of aligned genuine photos
        high_block_peak = round(float(np.percentile([float(r["aligned_block_peak"]) for r in aligned_rows
                                                     if int(r["label"]) == 0], 95)), 6)
    fitted = Calibration(features=embedding.features, weights=embedding.weights, bias=embedding.bias,
                         suspicious_threshold=0.0, counterfeit_threshold=0.0, aligned=aligned, shapes=embedding.shapes)
    # thresholds are set on exactly the score the service computes
    y = np.array([int(r["label"]) for r in rows])
    scores = np.array([fitted.fuse(r, aligned=bool(r.get("aligned"))) for r in rows])
    suspicious = threshold_at_fpr(y, scores, suspicious_fpr)
    counterfeit = max(suspicious, threshold_at_fpr(y, scores, counterfeit_fpr))
    return Calibration(
        features=embedding.features, weights=embedding.weights, bias=embedding.bias,
        suspicious_threshold=_round_up(suspicious), counterfeit_threshold=_round_up(counterfeit),
        top_k=top_k, aggregation=aggregation, notes=notes,
        # stands in for the best other-brand match when a gallery holds a single brand
        default_other_similarity=round(float(np.median([float(r["other_brand_similarity"]) for r in genuine])), 6),
        # informational flag: below the 1st percentile of genuine photos' similarity
        low_similarity=round(float(np.percentile([float(r["brand_similarity"]) for r in genuine], 1)), 6),
        high_patch_anomaly=high_patch_anomaly, high_block_peak=high_block_peak, aligned=aligned, shapes=embedding.shapes,
        extra={"suspicious_fpr_target": suspicious_fpr, "counterfeit_fpr_target": counterfeit_fpr, "fitted_on": len(rows),
               **({"aligned_fitted_on": len(aligned_rows)} if aligned is not None else {})},
    )


def _round_up(threshold: float) -> float:
    """Six decimals, rounded up, so that rounding never lets an extra genuine photo over the line."""
    return min(1.0, math.ceil(threshold * 1e6) / 1e6)


def write_calibrated_model(source: LoadedModel, calibration: Calibration, out: str | Path) -> Path:
    """A new model folder: ``source``'s files with this calibration. Never writes into an existing
    model folder, so the built-in model inside the installed package is never changed."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InvalidInputError(f"{out} already exists and is not empty: calibrate into a new model folder")
    if out.resolve().is_relative_to(default_model_path().parent.resolve()):
        raise InvalidInputError(f"{out} is inside the installed package: calibrate into a folder of your own")
    for name in (*REQUIRED_FILES, WEIGHTS_FILE):
        if name != "calibration.json" and (source.path / name).is_file():
            atomic_write_bytes(out / name, (source.path / name).read_bytes())
    atomic_write_bytes(out / "calibration.json", (json.dumps(calibration.to_dict(), indent=2) + "\n").encode())
    load_model(out)  # the new folder must load as it stands
    return out
