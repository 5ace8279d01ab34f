"""Which alignment signals enter the aligned fusion: greedy forward selection in which a signal
earns its place on brands the fusion was not fitted on, and must not lose on a real-photo set.

Real photos are evidence for the fit as well as a judge: the real set's brands are split in two, each
half's photos are scored by a fusion fitted on the synthetic rows and the other half (cross-fitting),
so every real photo is judged by a fit that never saw its brand. Fitted on synthetic photos alone, the
fusions' weights did not transfer: the embedding evidence weighed a third as much as real photos need."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from detector.evaluation.metrics import roc_auc
from detector.model_folder import Calibration
from training.calibrate import fit_calibration

MIN_GAIN = 0.005  # ROC-AUC a signal must add on the held-out brands
MAX_REAL_LOSS = 0.005  # ROC-AUC it may cost on the real-photo set
REAL_FOLDS = 2


@dataclass
class Selection:
    chosen: list[str]
    baseline: dict[str, float | None]  # held-out and real ROC-AUC without an aligned fusion
    figures: dict[str, float | None]  # the same with the chosen signals
    steps: list[dict[str, Any]] = field(default_factory=list)  # every candidate tried at every step, with its figures


def listing_auc(calibration, rows: list[dict[str, Any]]) -> float | None:
    """ROC-AUC of the scores a check would give these photos under ``calibration``."""
    return roc_auc([r["label"] for r in rows], [calibration.fuse(r, aligned=bool(r.get("aligned"))) for r in rows])


def real_folds(real_rows: list[dict[str, Any]], folds: int = REAL_FOLDS) -> list[tuple[list[dict], list[dict]]]:
    """(rows to fit on, rows to judge) per fold: the real set's brands dealt out in turn, in sorted order."""
    brands = sorted({r["brand"] for r in real_rows})
    out = []
    for fold in range(folds):
        judged = set(brands[fold::folds])
        out.append(([r for r in real_rows if r["brand"] not in judged], [r for r in real_rows if r["brand"] in judged]))
    return out


def cross_fitted(fit_rows: list[dict[str, Any]], real_rows: list[dict[str, Any]], *, base: list[str],
                 aligned: list[str], fusion: str = "linear") -> tuple[list[Calibration], list[float]]:
    """Each fold's calibration (fitted on ``fit_rows`` and its real rows), and each real row's score (in
    ``real_rows``' order) by the calibration that did not see its brand."""
    calibrations, scores = [], {}
    for fit_real, judged in real_folds(real_rows):
        calibration = fit_calibration(fit_rows + fit_real, base, aligned_features=aligned or None, fusion=fusion)
        calibrations.append(calibration)
        scores.update({id(r): calibration.fuse(r, aligned=bool(r.get("aligned"))) for r in judged})
    return calibrations, [scores[id(r)] for r in real_rows]


def select_aligned_signals(fit_rows: list[dict], held_out_rows: list[dict], real_rows: list[dict], *,
                           base: list[str], candidates: list[str], fusion: str = "linear") -> Selection:
    """Start from the embedding fusion of ``base``; add to it, one at a time, the candidate that raises the
    held-out ROC-AUC (the folds' mean) most, while it raises it by at least ``MIN_GAIN`` and costs the
    real set at most ``MAX_REAL_LOSS``. With no candidate chosen there is no aligned fusion. Every fit is
    of the kind ``fusion`` names (``training.calibrate.fit_calibration``)."""
    chosen: list[str] = []

    def figures(extra: list[str]) -> dict[str, float | None]:
        calibrations, real_scores = cross_fitted(fit_rows, real_rows, base=base, aligned=extra, fusion=fusion)
        return {"held_out": float(np.mean([listing_auc(c, held_out_rows) for c in calibrations])),
                "real": roc_auc([r["label"] for r in real_rows], real_scores)}

    current = figures([])
    selection = Selection(chosen, current, current)
    while True:
        tried = {c: figures([*chosen, c]) for c in candidates if c not in chosen}
        selection.steps.append({"with": list(chosen), "tried": tried})
        eligible = {c: f for c, f in tried.items()
                    if f["held_out"] - current["held_out"] >= MIN_GAIN and f["real"] >= current["real"] - MAX_REAL_LOSS}
        if not eligible:
            selection.figures = current
            return selection
        best = max(eligible, key=lambda c: eligible[c]["held_out"])
        chosen.append(best)
        current = eligible[best]
