"""Measure a model on a benchmark dataset, and compare two models on the same photos."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from detector.evaluation.metrics import paired_auc_difference, roc_auc
from detector.evaluation.run import evaluate_rows
from detector.evaluation.summary import summarise
from detector.model_folder import LoadedModel
from detector.signals import signal
from training.config import BenchmarkEntry

Keep = Callable[[dict], bool]


def genuine_and(rows: list[dict], keep: Keep) -> list[dict]:
    """Every genuine photo and the counterfeits ``keep`` selects."""
    return [r for r in rows if r["label"] == 0 or keep(r)]


def _summary(rows: list[dict], keep: Keep) -> dict[str, Any]:
    chosen = genuine_and(rows, keep)
    return summarise(np.array([r["label"] for r in chosen]), np.array([r["score"] for r in chosen]))


def subsets(rows: list[dict], seen_kinds: set[str]) -> dict[str, Keep]:
    kinds = {r["kind"] for r in rows if r["label"] == 1}
    chosen: dict[str, Keep] = {"all": lambda r: True}
    if len(kinds) > 1:
        chosen.update(seen_kinds=lambda r: r["kind"] in seen_kinds, unseen_kinds=lambda r: r["kind"] not in seen_kinds)
    return chosen


def compare(ours: list[dict], theirs: list[dict], seen_kinds: set[str]) -> dict[str, Any]:
    """Paired bootstrap of the ROC-AUC difference per subset (both models scored the same photos)."""
    by_path = {r["path"]: r for r in theirs}
    out = {}
    for name, keep in subsets(ours, seen_kinds).items():
        chosen = genuine_and(ours, keep)
        out[name] = paired_auc_difference([r["label"] for r in chosen], [r["score"] for r in chosen],
                                          [by_path[r["path"]]["score"] for r in chosen])
    return out


def benchmark(model: LoadedModel, entry: BenchmarkEntry, seen_kinds: set[str]) -> tuple[dict[str, Any], list[dict]]:
    """Figures per subset and per kind, each fused signal on its own, and the rows they come from."""
    if not entry.path.exists() and entry.synth:
        from training.synth.generate import generate

        generate(entry.path, entry.synth.synth_config())
    rows = evaluate_rows(entry.path, model)
    kinds = sorted({r["kind"] for r in rows if r["label"] == 1})
    result = {name: _summary(rows, keep) for name, keep in subsets(rows, seen_kinds).items()}
    result["per_kind"] = {k: _summary(rows, lambda r, k=k: r["kind"] == k)["roc_auc"] for k in kinds}
    labels = [r["label"] for r in rows]
    # each fused signal on its own, oriented so that higher means counterfeit
    result["per_signal"] = {f: roc_auc(labels, [signal(f).oriented(float(r[f])) for r in rows])
                            for f in model.calibration.features}
    return result, rows
