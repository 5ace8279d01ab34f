"""Write a trained model folder and measure it against the zero-shot model on the recipe's benchmarks."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from detector.model_folder import Calibration, ModelConfig, load_model, save_model_folder
from training.benchmarks import benchmark, compare
from training.config import Recipe
from training.model_card import model_card


def export_model(recipe: Recipe, mconfig: ModelConfig, calibration: Calibration, net, result, *,
                 provenance: dict[str, Any]) -> Path:
    """``provenance``: the command that trained it and its wall time up to export (shown in the card)."""
    folder = recipe.export
    splits, state = result.splits, result.state
    metrics: dict[str, Any] = {"validation_roc_auc": state.best_auroc, "steps": state.step, "provenance": provenance,
                               "splits": {k: list(v) for k, v in splits.__dict__.items()}, "benchmarks": {}}
    save_model_folder(folder, config=mconfig, calibration=calibration, metrics=metrics, model_card="(pending)\n", net=net)
    trained, zero_shot = load_model(folder, precision=result.precision), load_model(None, precision=result.precision)
    # Calibration saw validation kinds; gradient steps saw only training kinds.
    seen = set(splits.train_kinds) | set(splits.val_kinds)
    for entry in recipe.evaluate:
        if not entry.path.exists() and not entry.synth:
            print(f"skipping benchmark {entry.name}: {entry.path} not found", file=sys.stderr)
            continue
        ours, our_rows = benchmark(trained, entry, seen)
        theirs, their_rows = benchmark(zero_shot, entry, seen)
        metrics["benchmarks"][entry.name] = {
            "command": f"cfd evaluate --data {entry.path} --model {folder}",
            mconfig.name: ours, zero_shot.name: theirs,
            "roc_auc_difference": compare(our_rows, their_rows, seen),
        }
    card = model_card(recipe, mconfig, calibration, metrics, zero_shot.name)
    save_model_folder(folder, config=mconfig, calibration=calibration, metrics=metrics, model_card=card, net=net)
    return folder
