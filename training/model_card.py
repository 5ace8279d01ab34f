"""The model card of a trained model: what it is, how to reproduce it, how it measured against the
zero-shot model, and whether it ships."""

from __future__ import annotations

import json
from typing import Any

from detector.model_folder import Calibration, ModelConfig
from training.config import Recipe


def shipping_decision(metrics: dict[str, Any], name: str, baseline: str) -> str:
    """Ship only a model that beats the zero-shot one on real photos and on unseen synthetic kinds."""
    verdicts = []
    for bench, result in metrics["benchmarks"].items():
        subset_name = "unseen_kinds" if "unseen_kinds" in result[name] else "all"
        ours, theirs = result[name][subset_name]["roc_auc"], result[baseline][subset_name]["roc_auc"]
        verdicts.append((bench, subset_name, ours, theirs, ours is not None and theirs is not None and ours > theirs))
    table = "; ".join(f"{b} ({s.replace('_', ' ')}): ROC-AUC {o:.3f} vs {t:.3f}" for b, s, o, t, _ in verdicts if o is not None)
    if verdicts and all(v[-1] for v in verdicts):
        return f"Beats {baseline} on every benchmark ({table}): a candidate for the default model."
    return (f"Not shipped: it does not beat {baseline} on every benchmark ({table}). The zero-shot model stays "
            "the default of `cfd serve`, and these weights are not committed.")


def architecture(recipe: Recipe, mconfig: ModelConfig) -> str:
    """What this recipe trains, in words."""
    train_from = recipe.model.train_from_block
    parts = [f"{mconfig.backbone} with ImageNet weights from the registry, "
             + ("frozen" if train_from is None else f"blocks from {train_from} on fine-tuned")]
    if mconfig.embedding_dim:
        parts.append(f"a {mconfig.embedding_dim}-d projection trained with a supervised contrastive loss over brand "
                     "identity (counterfeits act as negatives of their brand)")
    else:
        parts.append("the pooled backbone features as the embedding (no projection)")
    if mconfig.head:
        parts.append("a genuine-versus-counterfeit head on the pooled features")
    if mconfig.patch_dim:
        parts.append(f"a patch head ({mconfig.patch_dim}-d local descriptors on a 14 x 14 grid, with attention) trained "
                     "with a pairwise ranking loss so that the closest references' parts reappear in genuine listing "
                     "photos and not in counterfeits (the `patch_anomaly` signal, detector/patches.py)")
    return "Architecture: " + "; ".join(parts) + "."


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def model_card(recipe: Recipe, mconfig: ModelConfig, calibration: Calibration, metrics: dict[str, Any],
               baseline: str) -> str:
    splits = metrics["splits"]
    lines = [
        f"# {mconfig.name} {mconfig.version}", "",
        architecture(recipe, mconfig), "",
        "## Data", "",
        f"`{recipe.data.root}` (synthetic: `{json.dumps(recipe.data.synth.model_dump() if recipe.data.synth else None)}`). Splits by brand and by "
        f"counterfeit kind: {len(splits['train_brands'])} training brands, {len(splits['val_brands'])} validation brands; "
        f"training kinds {splits['train_kinds']}, validation kinds {splits['val_kinds']} (calibration only), "
        f"held-out kinds {splits['holdout_kinds']} (never used).", "",
        "## Reproduce", "",
        "```bash", metrics["provenance"].get("command", "cfd train --config <recipe>"), "```", "",
        *([f"Wall time from the start of that command to export (data generation, training, calibration), on the "
           f"machine that trained it: {metrics['provenance']['wall_s_to_export']} s"
           + (" (a resumed run: this invocation only)." if metrics["provenance"].get("resumed") else ".")]
          if "wall_s_to_export" in metrics["provenance"] else []), "",
        "Benchmarks, for either model (`--model` omitted: the zero-shot one):", "",
        "```bash", *[b["command"] for b in metrics["benchmarks"].values()], "```", "",
        "## Recipe", "",
        "```yaml", json.dumps(recipe.train.model_dump(mode="json"), indent=2), "```", "",
        f"Stopped after {metrics['steps']} steps; best validation ROC-AUC (unseen brands) {metrics['validation_roc_auc']:.4f}.",
        "", "## Calibration", "",
        f"Logistic fusion of {list(calibration.features)}: weights {list(calibration.weights)}, bias {calibration.bias}; "
        f"suspicious >= {calibration.suspicious_threshold}, counterfeit >= {calibration.counterfeit_threshold} "
        f"({calibration.notes}).", "",
        "## Measured against the zero-shot model", "",
        "Every benchmark brand is unseen (generated with another seed, or real photos). 'Unseen kinds' are the "
        "counterfeit kinds held out of training and calibration.", "",
        "| benchmark | subset | model | ROC-AUC | TPR @ 1% FPR | TPR @ 5% FPR |", "|---|---|---|---|---|---|",
    ]
    for name, result in metrics["benchmarks"].items():
        for subset_name in ("all", "seen_kinds", "unseen_kinds"):
            for model_name in (mconfig.name, baseline):
                m = result[model_name].get(subset_name)
                if m:
                    lines.append(f"| {name} | {subset_name.replace('_', ' ')} | {model_name} | {_fmt(m['roc_auc'])} | "
                                 f"{_fmt(m['tpr_at_1pct_fpr'])} | {_fmt(m['tpr_at_5pct_fpr'])} |")
    lines += ["", f"ROC-AUC difference ({mconfig.name} minus {baseline}), with a 95% paired bootstrap interval over photos:", "",
              "| benchmark | subset | difference | 95% interval |", "|---|---|---|---|"]
    for name, result in metrics["benchmarks"].items():
        for subset_name, d in result.get("roc_auc_difference", {}).items():
            if d["difference"] is not None:
                lines.append(f"| {name} | {subset_name.replace('_', ' ')} | {d['difference']:+.3f} | "
                             f"[{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}] |")
    lines += ["", "Per kind (ROC-AUC):", "", "| benchmark | kind | " + mconfig.name + " | " + baseline + " |", "|---|---|---|---|"]
    for name, result in metrics["benchmarks"].items():
        for kind, value in result[mconfig.name]["per_kind"].items():
            lines.append(f"| {name} | {kind} | {_fmt(value)} | {_fmt(result[baseline]['per_kind'].get(kind))} |")
    lines += ["", f"Each signal of {mconfig.name} on its own (ROC-AUC, all photos):", "",
              "| benchmark | " + " | ".join(calibration.features) + " | fused |", "|---" * (len(calibration.features) + 2) + "|"]
    for name, result in metrics["benchmarks"].items():
        ours = result[mconfig.name]
        lines.append(f"| {name} | " + " | ".join(_fmt(ours["per_signal"][f]) for f in calibration.features)
                     + f" | {_fmt(ours['all']['roc_auc'])} |")
    lines += ["", "## Shipping decision", "", shipping_decision(metrics, mconfig.name, baseline)]
    lines += ["", "## Known limits", "",
              "- Trained on synthetic products only; real-photo performance is the grocery-store row above.",
              "- The fusion weights are fitted on synthetic validation brands. Compare each signal's own ROC-AUC above: "
              "where a signal is weaker on real photos than on synthetic ones, the fusion leans on it more than it earns there.",
              "- Per-kind rows rest on the synthetic sets' 3 photos per brand and kind: read them with the intervals "
              "of the larger subsets above in mind.",
              "- Thresholds are set at target false-positive rates on synthetic validation brands.", ""]
    return "\n".join(lines)
