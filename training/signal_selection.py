"""Which alignment signals enter the aligned fusion: greedy forward selection in which a signal
earns its place on brands the fusion was not fitted on, and must not lose on a real-photo set."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from detector.evaluation.metrics import roc_auc
from training.calibrate import fit_calibration

MIN_GAIN = 0.005  # ROC-AUC a signal must add on the held-out brands
MAX_REAL_LOSS = 0.005  # ROC-AUC it may cost on the real-photo set


@dataclass
class Selection:
    chosen: list[str]
    baseline: dict[str, float | None]  # held-out and real ROC-AUC without an aligned fusion
    figures: dict[str, float | None]  # the same with the chosen signals
    steps: list[dict[str, Any]] = field(default_factory=list)  # every candidate tried at every step, with its figures


def listing_auc(calibration, rows: list[dict[str, Any]]) -> float | None:
    """ROC-AUC of the scores a check would give these photos under ``calibration``."""
    return roc_auc([r["label"] for r in rows], [calibration.fuse(r, aligned=bool(r.get("aligned"))) for r in rows])


def select_aligned_signals(fit_rows: list[dict], held_out_rows: list[dict], real_rows: list[dict], *,
                           base: list[str], candidates: list[str]) -> Selection:
    """Start from the embedding fusion of ``base``; add to it, one at a time, the candidate that raises the
    held-out ROC-AUC most, while it raises it by at least ``MIN_GAIN`` and costs the real set at most
    ``MAX_REAL_LOSS``. With no candidate chosen there is no aligned fusion."""
    chosen: list[str] = []

    def figures(extra: list[str]) -> dict[str, float | None]:
        calibration = fit_calibration(fit_rows, base, aligned_features=extra or None)
        return {"held_out": listing_auc(calibration, held_out_rows), "real": listing_auc(calibration, real_rows)}

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
