"""Verdict thresholds: the model's own, or a brand's, refitted on that brand's genuine evidence.

A brand's thresholds are fitted so that the share of its genuine photos at or above them meets
the model's targets (5% suspicious, 1% counterfeit by default). With many photos for a target
(n >= 10/alpha) the threshold is the conformal quantile of the genuine scores: the
ceil((n+1)(1-alpha))-th smallest, which a new genuine photo exceeds with probability at most
alpha. With fewer (a brand has tens), it is the upper bound of a normal prediction interval in
logit space: mean + t(alpha, n-1) x sd x sqrt(1 + 1/n). On grocery-store (leave one genuine photo
out) that realised 3.4% / 0.6% against targets of 5% / 1%, where the median and MAD with a
normal quantile realised 6.8% / 2.5% (see benchmarks/brand_calibration.py). Thresholds belong to
one model: a model change falls back to the model's until the brand is calibrated again.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from detector.errors import InvalidInputError
from detector.fusion import sigmoid
from detector.model_folder import Calibration
from detector.results import CalibrationInfo, verdict_at
from detector.store import Store, write_audit
from detector.timestamps import utc_now

MIN_GENUINE = 8  # fewer genuine photos say too little about a brand's spread
MIN_SPREAD = 0.1  # logit units: a brand whose photos all score alike still gets some margin
DEFAULT_TARGETS = (0.05, 0.01)  # suspicious, counterfeit: the share of genuine photos flagged


@dataclass(frozen=True)
class Thresholds:
    suspicious: float
    counterfeit: float
    scope: str = "model"  # or "brand"
    source: str | None = None  # for a brand: what its thresholds were fitted on
    genuine: int | None = None  # how many genuine photos
    fitted_at: str | None = None

    def verdict(self, score: float) -> str:
        return verdict_at(score, suspicious=self.suspicious, counterfeit=self.counterfeit)

    def info(self) -> CalibrationInfo:
        return CalibrationInfo(scope=self.scope, suspicious_threshold=round(self.suspicious, 6),
                               counterfeit_threshold=round(self.counterfeit, 6), source=self.source,
                               genuine_photos=self.genuine, fitted_at=self.fitted_at)


def model_thresholds(calibration: Calibration) -> Thresholds:
    return Thresholds(calibration.suspicious_threshold, calibration.counterfeit_threshold)


def targets_of(calibration: Calibration) -> tuple[float, float]:
    extra = calibration.extra
    return (float(extra.get("suspicious_fpr_target", DEFAULT_TARGETS[0])),
            float(extra.get("counterfeit_fpr_target", DEFAULT_TARGETS[1])))


def threshold_for(scores: np.ndarray, alpha: float) -> tuple[float, str]:
    """The score a new genuine photo reaches with probability about ``alpha``; and how it was found."""
    scores = np.sort(np.asarray(scores, np.float64))
    n = len(scores)
    if n >= 10 / alpha:
        # strictly above that order statistic: a verdict flags scores >= the threshold
        return float(np.nextafter(scores[math.ceil((n + 1) * (1 - alpha)) - 1], np.inf)), "conformal"
    z = _logit(scores)
    spread = max(float(z.std(ddof=1)), MIN_SPREAD)
    return sigmoid(float(z.mean()) + _t_quantile(1 - alpha, n - 1) * spread * math.sqrt(1 + 1 / n)), "prediction-interval"


def fit(scores: np.ndarray, *, targets: tuple[float, float], source: str) -> tuple[Thresholds, dict[str, Any]]:
    """Brand thresholds from its genuine photos' scores; ``detail`` says how each was found."""
    scores = np.asarray(scores, np.float64)
    if len(scores) < MIN_GENUINE:
        raise InvalidInputError(f"{len(scores)} genuine photo(s) to calibrate on; at least {MIN_GENUINE} are needed")
    suspicious, how_s = threshold_for(scores, targets[0])
    counterfeit, how_c = threshold_for(scores, targets[1])
    counterfeit = max(counterfeit, suspicious)
    detail = {"targets": {"flagged_fpr": targets[0], "counterfeit_fpr": targets[1]},
              "methods": {"suspicious": how_s, "counterfeit": how_c},
              "in_sample": {"flagged_fpr": float(np.mean(scores >= suspicious)),
                            "counterfeit_fpr": float(np.mean(scores >= counterfeit))}}
    return Thresholds(suspicious, counterfeit, "brand", source, len(scores), utc_now()), detail


def save(store: Store, brand: str, model: str, thresholds: Thresholds, detail: dict[str, Any], *, actor: str) -> None:
    with store.transaction() as conn:
        conn.execute("INSERT INTO brand_calibrations(brand, model, suspicious, counterfeit, source, detail, fitted_at) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (brand, model) DO UPDATE SET suspicious = excluded.suspicious, "
                     "counterfeit = excluded.counterfeit, source = excluded.source, detail = excluded.detail, "
                     "fitted_at = excluded.fitted_at",
                     (brand, model, thresholds.suspicious, thresholds.counterfeit, thresholds.source,
                      json.dumps({**detail, "genuine": thresholds.genuine}), thresholds.fitted_at))
        write_audit(conn, actor, "calibration.brand", brand, suspicious=thresholds.suspicious,
                    counterfeit=thresholds.counterfeit, source=thresholds.source, genuine=thresholds.genuine)


def stored(store: Store, brand: str | None, model: str) -> Thresholds | None:
    if brand is None:
        return None
    rows = store.query("SELECT suspicious, counterfeit, source, detail, fitted_at FROM brand_calibrations "
                       "WHERE brand = ? AND model = ?", (brand, model))
    if not rows:
        return None
    suspicious, counterfeit, source, detail, fitted_at = rows[0]
    return Thresholds(suspicious, counterfeit, "brand", source, json.loads(detail).get("genuine"), fitted_at)


def _t_quantile(q: float, dof: int) -> float:
    """Student's t quantile by its Cornish-Fisher expansion around the normal one (within 1% for dof >= 5)."""
    z = NormalDist().inv_cdf(q)
    return z + (z**3 + z) / (4 * dof) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * dof**2)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


