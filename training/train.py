"""Fine-tune: ``cfd train --config training/configs/small.yaml [key=value ...]`` or
``python -m training.train ...``; under ``torchrun --nproc_per_node=N`` it trains with
DistributedDataParallel (gloo on CPU, nccl on GPU).

Each step's batch and augmentation come from a generator seeded by (seed, rank, step), so a run
resumed from its checkpoint continues exactly as it would have.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
import yaml
from tqdm import tqdm

from detector.backbones import get_backbone_spec
from detector.embedder import resolve_precision
from detector.errors import DetectorError
from detector.evaluation.metrics import roc_auc
from detector.evaluation.run import evaluate_rows
from detector.fsutil import atomic_write_bytes
from detector.model_folder import WEIGHTS_FILE, Calibration, LoadedModel, ModelConfig, build_net, default_model_path
from detector.scoring import fuse
from training.calibrate import fit_calibration
from training.config import load_config
from training.data import BatchMaker, Splits, load_training_dataset, make_splits, subset, training_items
from training.losses import batch_patch_anomalies, ranking_loss, supcon_loss

CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"


# --- set-up -------------------------------------------------------------------------------

def init_distributed() -> tuple[int, int]:
    if "RANK" not in os.environ:
        return 0, 1
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size()


def model_config(config: dict[str, Any]) -> ModelConfig:
    zero_shot = json.loads((default_model_path() / "config.json").read_text())
    model = config["model"]
    spec = get_backbone_spec(model["backbone"])
    weights = spec.weights
    optional = {key: None if model.get(key) is None else int(model[key]) for key in ("embedding_dim", "patch_dim")}
    return ModelConfig(
        name=config["name"], version=str(config["version"]), backbone=model["backbone"], input_size=weights.input_size,
        crop_pct=weights.crop_pct, interpolation=weights.interpolation, mean=weights.mean, std=weights.std,
        feature_dim=spec.feature_dim, head=bool(model.get("head", True)), weights=WEIGHTS_FILE,
        format_version=zero_shot["format_version"], **optional,
    )


def freeze_early_layers(net, train_from_block: int | None) -> None:
    """Blocks before ``train_from_block`` (and the stem) stay frozen; None freezes the whole backbone."""
    for name, parameter in net.backbone.model.named_parameters():
        # the ImageNet classifier is not on the embedding path: it stays as it is
        frozen = train_from_block is None or name.startswith(("conv_stem", "bn1", "classifier")) or (
            name.startswith("blocks.") and int(name.split(".")[1]) < train_from_block)
        parameter.requires_grad = not frozen


def set_frozen_eval(net) -> None:
    """Frozen layers keep their BatchNorm statistics: put them in eval mode while training."""
    net.train()
    for module in net.backbone.model.modules():
        params = list(module.parameters(recurse=False))
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and params and not params[0].requires_grad:
            module.eval()


def lr_factor(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


# --- evaluation -----------------------------------------------------------------------------

def provisional_calibration(features: list[str]) -> Calibration:
    """Only the signals matter for the fit that follows; these weights are placeholders."""
    return Calibration(features=tuple(features), weights=(0.0,) * len(features), bias=0.0,
                       suspicious_threshold=0.5, counterfeit_threshold=0.5)


def validation_rows(net, mconfig: ModelConfig, dataset, features: list[str], precision: str) -> list[dict]:
    model = LoadedModel(Path("."), mconfig, provisional_calibration(features), {}, net, "training")
    net.eval()
    try:
        return evaluate_rows(dataset, model, precision=precision, show_progress=False)
    finally:
        set_frozen_eval(net)


def validation_auroc(rows: list[dict], config: dict[str, Any]) -> float:
    calibration = fit_calibration(rows, list(config["calibration"]["features"]))
    return float(roc_auc([int(r["label"]) for r in rows], [fuse(r, calibration) for r in rows]))


# --- checkpoints ----------------------------------------------------------------------------

def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=False)


# --- the run --------------------------------------------------------------------------------

def prepare_data(config: dict[str, Any], rank: int) -> None:
    root = Path(config["data"]["root"])
    synth = config["data"].get("synth")
    if rank == 0 and not root.exists() and synth and not config["data"].get("manifest"):
        from training.synth.generate import SynthConfig, generate

        generate(root, SynthConfig(**synth), show_progress=True)
    if dist.is_initialized():
        dist.barrier()


def train(config: dict[str, Any], *, resume: bool = False, show_progress: bool = True) -> dict[str, Any]:
    rank, world = init_distributed()
    seed = int(config["seed"])
    torch.manual_seed(seed)
    tc = config["train"]
    out = Path(config["out"])
    prepare_data(config, rank)
    dataset = load_training_dataset(config["data"]["root"], config["data"].get("manifest"))
    splits = make_splits(dataset, seed=seed, val_brand_fraction=float(config["data"]["val_brand_fraction"]),
                         val_kinds=list(config["data"].get("val_kinds", [])),
                         holdout_kinds=list(config["data"].get("holdout_kinds", [])))
    val_set = subset(dataset, splits.val_brands, splits.train_kinds + splits.val_kinds)
    mconfig = model_config(config)
    net = build_net(mconfig, pretrained=True)
    train_from = config["model"].get("train_from_block")
    freeze_early_layers(net, None if train_from is None else int(train_from))
    set_frozen_eval(net)
    precision = resolve_precision(tc.get("precision", "auto"))
    heads = [p for n, p in net.named_parameters() if p.requires_grad and not n.startswith("backbone.")]
    body = [p for n, p in net.named_parameters() if p.requires_grad and n.startswith("backbone.")]
    if not heads and not body:
        raise DetectorError("nothing to train: the backbone is frozen and the model has no projection, head or patch head")
    # SupCon shapes the embedding only when something on its path can learn
    embedding_learns = bool(body) or any(p.requires_grad for p in net.projection.parameters())
    weights = {"supcon": float(tc.get("supcon_weight", 1.0)) if embedding_learns else 0.0,
               "head_bce": float(tc.get("head_weight", 1.0)) if net.head is not None else 0.0,
               "patch_rank": float(tc.get("patch_weight", 1.0)) if net.patch_head is not None else 0.0}
    optimizer = torch.optim.AdamW([{"params": heads, "lr": float(tc["lr"])}, {"params": body, "lr": float(tc["backbone_lr"])}],
                                  weight_decay=float(tc["weight_decay"]))
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    net.to(memory_format=torch.channels_last)
    model = torch.nn.parallel.DistributedDataParallel(net) if world > 1 else net
    batches = BatchMaker(training_items(dataset, splits), mconfig.transform(), seed=seed,
                         batch_brands=int(tc["batch_brands"]), genuine_per_brand=int(tc["genuine_per_brand"]),
                         counterfeits_per_brand=int(tc["counterfeits_per_brand"]),
                         references_per_brand=int(tc.get("references_per_brand", 8)) if weights["patch_rank"] else 0)

    state = {"step": 0, "best_auroc": -1.0, "bad_evals": 0, "history": []}
    checkpoint_path = out / CHECKPOINT
    if resume and checkpoint_path.exists():
        saved = load_checkpoint(checkpoint_path)
        net.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        state = saved["state"]
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out / "config.resolved.yaml", yaml.safe_dump(config, sort_keys=False).encode())
        atomic_write_bytes(out / "splits.json", json.dumps(splits.__dict__, indent=2).encode())

    total = int(tc["steps"])
    stop_after = tc.get("stop_after")  # stop this invocation early; --resume continues
    stop = False
    bar = tqdm(total=total, initial=state["step"], desc="training", unit="step", disable=not show_progress or rank != 0)
    while state["step"] < total and not stop:
        step = state["step"]
        for group, base in zip(optimizer.param_groups, base_lrs):
            group["lr"] = base * lr_factor(step, total, int(tc["warmup_steps"]))
        batch = batches.batch(step, rank)
        torch.manual_seed(hash((seed, rank, step)) % (2**63))  # the feature dropout, reproducible per step
        losses = step_losses(model, batch, weights, tc, precision)
        loss = sum(weights[name] * value for name, value in losses.items())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in net.parameters() if p.requires_grad], float(tc["grad_clip"]))
        optimizer.step()
        state["step"] = step + 1
        record = {"step": step + 1, "loss": loss.item(), **{name: value.item() for name, value in losses.items()}}
        bar.update(1)
        bar.set_postfix(loss=f"{record['loss']:.3f}")
        if state["step"] % int(tc["eval_every"]) == 0 or state["step"] == total:
            flag = torch.zeros(1)
            if rank == 0:
                rows = validation_rows(net, mconfig, val_set, list(config["calibration"]["features"]), precision)
                record["val_auroc"] = validation_auroc(rows, config)
                if record["val_auroc"] > state["best_auroc"]:
                    state["best_auroc"], state["bad_evals"] = record["val_auroc"], 0
                    save_checkpoint(out / BEST, {"model": net.state_dict(), "step": state["step"], "val_auroc": record["val_auroc"]})
                else:
                    state["bad_evals"] += 1
                flag[0] = float(state["bad_evals"] >= int(tc["patience"]))
                bar.write(f"step {state['step']}: validation ROC-AUC {record['val_auroc']:.4f} (best {state['best_auroc']:.4f})")
            if world > 1:
                dist.broadcast(flag, 0)
            stop = bool(flag[0])
        state["history"].append(record)
        paused = stop_after is not None and state["step"] >= int(stop_after)
        if rank == 0 and (state["step"] % int(tc["eval_every"]) == 0 or stop or paused or state["step"] == total):
            save_checkpoint(checkpoint_path, {"model": net.state_dict(), "optimizer": optimizer.state_dict(), "state": state})
        if paused:
            break
    bar.close()
    if rank == 0:
        plot_curves(state["history"], out / "training_curves.png")
        atomic_write_bytes(out / "history.json", json.dumps(state["history"], indent=1).encode())
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return {"state": state, "splits": splits, "model_config": mconfig, "rank": rank, "precision": precision, "dataset": dataset}


def step_losses(model, batch, weights: dict[str, float], tc: dict[str, Any], precision: str) -> dict[str, torch.Tensor]:
    """The enabled losses of one batch: listing photos and, for the patch loss, their brands' references."""
    n = len(batch.labels)
    pixels = torch.cat([batch.pixels, batch.reference_pixels]).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        embeddings, logits, patches = model(pixels)
    embeddings = embeddings.float()
    losses = {}
    if weights["supcon"]:
        losses["supcon"] = supcon_loss(embeddings[:n], batch.identities, float(tc["temperature"]))
    if weights["head_bce"]:
        labels = batch.labels
        positives = labels.sum().clamp(min=1.0)
        losses["head_bce"] = F.binary_cross_entropy_with_logits(logits[:n].float(), labels,
                                                                pos_weight=(len(labels) - positives) / positives)
    if weights["patch_rank"]:
        listing = ~batch.is_reference  # a reference against its own gallery would be trivially genuine
        anomalies = batch_patch_anomalies(patches[:n][listing].float(), embeddings[:n][listing], batch.brands[listing],
                                          patches[n:].float(), embeddings[n:], batch.reference_brands)
        losses["patch_rank"] = ranking_loss(anomalies, batch.labels[listing], float(tc.get("patch_temperature", 0.05)))
    return losses


def plot_curves(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for key in [k for k in history[0] if k not in ("step", "val_auroc")] if history else []:
        values = np.array([h[key] for h in history])
        window = max(1, len(values) // 30)
        smooth = np.convolve(values, np.ones(window) / window, mode="valid")
        axes[0].plot(steps[window - 1:], smooth, label=key)
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("training loss (smoothed)")
    axes[0].legend()
    evals = [(h["step"], h["val_auroc"]) for h in history if "val_auroc" in h]
    if evals:
        axes[1].plot(*zip(*evals), marker="o")
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("validation ROC-AUC (unseen brands)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def finish(config: dict[str, Any], result: dict[str, Any], *, provenance: dict[str, Any] | None = None,
           show_progress: bool = True) -> Path:
    """Best weights -> calibration on validation brands -> model folder -> benchmark metrics."""
    from training.export import export_model

    out = Path(config["out"])
    mconfig: ModelConfig = result["model_config"]
    splits: Splits = result["splits"]
    net = build_net(mconfig, pretrained=False)
    net.load_state_dict(load_checkpoint(out / BEST)["model"])
    net.eval()
    val_set = subset(result["dataset"], splits.val_brands, splits.train_kinds + splits.val_kinds)
    features = list(config["calibration"]["features"])
    rows = validation_rows(net, mconfig, val_set, features, result["precision"])
    calibration = fit_calibration(rows, features, suspicious_fpr=float(config["calibration"]["suspicious_fpr"]),
                                  counterfeit_fpr=float(config["calibration"]["counterfeit_fpr"]),
                                  notes=f"fitted on {len(rows)} photos of the validation brands {list(splits.val_brands)}, "
                                        f"kinds {list(splits.train_kinds + splits.val_kinds)}")
    return export_model(config, mconfig, calibration, net, result, provenance=provenance or {}, show_progress=show_progress)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cfd train", description="Fine-tune and export a model folder.")
    parser.add_argument("--config", required=True)
    parser.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint")
    parser.add_argument("-q", "--quiet", action="store_true")
    parser.add_argument("overrides", nargs="*", help="key=value, e.g. train.steps=50")
    args = parser.parse_args(argv)
    try:
        run_from_args(args)
    except DetectorError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    return 0


def run_from_args(args) -> None:
    config = load_config(args.config, args.overrides)
    started = time.time()
    result = train(config, resume=args.resume, show_progress=not args.quiet)
    finished = result["state"]["step"] >= int(config["train"]["steps"]) or result["state"]["bad_evals"] >= int(config["train"]["patience"])
    if result["rank"] == 0 and not finished:
        print(f"paused at step {result['state']['step']}; continue with --resume", file=sys.stderr)
    elif result["rank"] == 0:
        command = " ".join(["cfd train --config", str(args.config), *(["--resume"] if args.resume else []), *args.overrides])
        provenance = {"command": command, "wall_s_to_export": round(time.time() - started),
                      "resumed": bool(args.resume)}
        folder = finish(config, result, provenance=provenance, show_progress=not args.quiet)
        print(f"exported {folder} in {time.time() - started:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
