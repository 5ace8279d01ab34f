"""Detection-quality figures of scored rows: overall, per kind, severity, brand and split."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from detector.evaluation.dataset import Dataset
from detector.evaluation.metrics import average_precision, confusion, roc_auc, tpr_at_fpr
from detector.model_folder import LoadedModel


def summarise(labels: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    return {
        "n": int(len(labels)),
        "n_counterfeit": int(labels.sum()),
        "n_genuine": int((1 - labels).sum()),
        "roc_auc": roc_auc(labels, scores),
        "average_precision": average_precision(labels, scores),
        "tpr_at_1pct_fpr": tpr_at_fpr(labels, scores, 0.01),
        "tpr_at_5pct_fpr": tpr_at_fpr(labels, scores, 0.05),
    }


def _grouped(rows: list[dict], key: str, *, genuine_shared: bool) -> dict[str, dict[str, Any]]:
    """Metrics per group. For kinds and severities the genuine photos are shared negatives."""
    genuine = [r for r in rows if r["label"] == 0]
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        if r[key] and (r["label"] == 1 or not genuine_shared):
            groups[str(r[key])].append(r)
    out = {}
    for name, members in sorted(groups.items()):
        subset = members + genuine if genuine_shared else members
        labels = np.array([r["label"] for r in subset])
        scores = np.array([r["score"] for r in subset])
        out[name] = summarise(labels, scores)
    return out


def realised_rates(rows: list[dict]) -> dict[str, Any]:
    """What the shipped thresholds do: the share of genuine photos flagged (suspicious or worse) and
    called counterfeit, and the share of counterfeit photos flagged and called counterfeit."""
    genuine = [r["verdict"] for r in rows if r["label"] == 0]
    counterfeit = [r["verdict"] for r in rows if r["label"] == 1]

    def share(verdicts: list[str], accepted: tuple[str, ...]) -> float | None:
        return sum(v in accepted for v in verdicts) / len(verdicts) if verdicts else None

    return {"n_genuine": len(genuine), "n_counterfeit": len(counterfeit),
            "flagged_fpr": share(genuine, ("suspicious", "counterfeit")), "counterfeit_fpr": share(genuine, ("counterfeit",)),
            "flagged_tpr": share(counterfeit, ("suspicious", "counterfeit")), "counterfeit_tpr": share(counterfeit, ("counterfeit",))}


def _realised(rows: list[dict], model: LoadedModel) -> dict[str, Any]:
    by_brand: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_brand[r["brand"]].append(r)
    extra = model.calibration.extra
    return {"targets": {"flagged_fpr": extra.get("suspicious_fpr_target"), "counterfeit_fpr": extra.get("counterfeit_fpr_target")},
            "overall": realised_rates(rows), "per_brand": {b: realised_rates(members) for b, members in sorted(by_brand.items())}}


def build_report(rows: list[dict], model: LoadedModel, dataset: Dataset) -> dict[str, Any]:
    labels = np.array([r["label"] for r in rows], dtype=np.int64)
    scores = np.array([r["score"] for r in rows], dtype=np.float64)
    return {
        "dataset": str(dataset.root),
        "model": {"name": model.name, "version": model.version, "path": str(model.path)},
        "brands": len(dataset.brands),
        "references": sum(len(v) for v in dataset.references.values()),
        "thresholds": {
            "suspicious": model.calibration.suspicious_threshold,
            "counterfeit": model.calibration.counterfeit_threshold,
        },
        "overall": summarise(labels, scores),
        "per_kind": _grouped(rows, "kind", genuine_shared=True),
        "per_severity": _grouped(rows, "severity", genuine_shared=True),
        "per_brand": _grouped(rows, "brand", genuine_shared=False),
        "per_split": _grouped(rows, "split", genuine_shared=False),
        "confusion": confusion(labels, [r["verdict"] for r in rows]),
        "realised": _realised(rows, model),
    }
