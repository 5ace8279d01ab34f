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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from detector import progress
from detector.backbones import get_backbone_spec
from detector.errors import DetectorError
from detector.evaluation.dataset import Dataset
from detector.evaluation.metrics import roc_auc
from detector.evaluation.run import evaluate_rows
from detector.fsutil import atomic_write_bytes
from detector.model_folder import FORMAT_VERSION, WEIGHTS_FILE, Calibration, LoadedModel, ModelConfig, build_net
from detector.precision import resolve_precision
from training.calibrate import fit_calibration
from training.config import Recipe, TrainSection, load_config
from training.data import BatchMaker, Splits, load_training_dataset, make_splits, subset, training_items
from training.losses import batch_patch_anomalies, ranking_loss, supcon_loss

CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"


@dataclass
class TrainState:
    """What a checkpoint keeps besides the weights; plain values, so checkpoints load with weights_only."""

    step: int = 0
    best_auroc: float = -1.0
    bad_evals: int = 0
    history: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class TrainResult:
    state: TrainState
    splits: Splits
    model_config: ModelConfig
    rank: int
    precision: str  # resolved: fp32 or bf16
    dataset: Dataset

    def finished(self, recipe: Recipe) -> bool:
        return self.state.step >= recipe.train.steps or self.state.bad_evals >= recipe.train.patience

    def validation_set(self) -> Dataset:
        return subset(self.dataset, self.splits.val_brands, self.splits.train_kinds + self.splits.val_kinds)


# --- set-up -------------------------------------------------------------------------------

def init_distributed() -> tuple[int, int]:
    if "RANK" not in os.environ:
        return 0, 1
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size()


def model_config(recipe: Recipe) -> ModelConfig:
    spec = get_backbone_spec(recipe.model.backbone)
    return ModelConfig(
        name=recipe.name, version=recipe.version, backbone=spec.name, input=spec.weights.input,
        feature_dim=spec.feature_dim, embedding_dim=recipe.model.embedding_dim, head=recipe.model.head,
        weights=WEIGHTS_FILE, format_version=FORMAT_VERSION, patch_dim=recipe.model.patch_dim,
    )


def freeze_early_layers(net, train_from_block: int | None) -> None:
    """The stem, the classifier and blocks before ``train_from_block`` stay frozen; None freezes the whole backbone."""
    stages = net.backbone.spec.stages
    for name, parameter in net.backbone.model.named_parameters():
        parameter.requires_grad = not stages.frozen(name, train_from_block)


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
    progress_ = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress_)))


# --- evaluation -----------------------------------------------------------------------------

def provisional_calibration(features: list[str]) -> Calibration:
    """Only the signals matter for the fit that follows; these weights are placeholders."""
    return Calibration(features=tuple(features), weights=(0.0,) * len(features), bias=0.0,
                       suspicious_threshold=0.5, counterfeit_threshold=0.5)


def validation_rows(net, mconfig: ModelConfig, dataset: Dataset, features: list[str], precision: str) -> list[dict]:
    model = LoadedModel(Path("."), mconfig, provisional_calibration(features), {}, net, "training", precision)
    net.eval()
    try:
        with progress.hidden():
            return evaluate_rows(dataset, model)
    finally:
        set_frozen_eval(net)


def validation_auroc(rows: list[dict], features: list[str]) -> float:
    calibration = fit_calibration(rows, features)
    return float(roc_auc([int(r["label"]) for r in rows], [calibration.fuse(r) for r in rows]))


# --- checkpoints ----------------------------------------------------------------------------

def save_checkpoint(path: Path, checkpoint: dict) -> None:
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


# --- the run --------------------------------------------------------------------------------

def prepare_data(recipe: Recipe, rank: int) -> None:
    data = recipe.data
    if rank == 0 and not data.root.exists() and data.synth and not data.manifest:
        from training.synth.generate import generate

        generate(data.root, data.synth.synth_config())
    if dist.is_initialized():
        dist.barrier()


def train(recipe: Recipe, *, resume: bool = False) -> TrainResult:
    rank, world = init_distributed()
    torch.manual_seed(recipe.seed)
    tc = recipe.train
    prepare_data(recipe, rank)
    dataset = load_training_dataset(recipe.data.root, recipe.data.manifest)
    splits = make_splits(dataset, seed=recipe.seed, val_brand_fraction=recipe.data.val_brand_fraction,
                         val_kinds=recipe.data.val_kinds, holdout_kinds=recipe.data.holdout_kinds)
    mconfig = model_config(recipe)
    net = build_net(mconfig, pretrained=True)
    freeze_early_layers(net, recipe.model.train_from_block)
    set_frozen_eval(net)
    precision = resolve_precision(tc.precision)
    heads = [p for n, p in net.named_parameters() if p.requires_grad and not n.startswith("backbone.")]
    body = [p for n, p in net.named_parameters() if p.requires_grad and n.startswith("backbone.")]
    if not heads and not body:
        raise DetectorError("nothing to train: the backbone is frozen and the model has no projection, head or patch head")
    # SupCon shapes the embedding only when something on its path can learn
    embedding_learns = bool(body) or any(p.requires_grad for p in net.projection.parameters())
    weights = {"supcon": tc.supcon_weight if embedding_learns else 0.0,
               "head_bce": tc.head_weight if net.head is not None else 0.0,
               "patch_rank": tc.patch_weight if net.patch_head is not None else 0.0}
    optimizer = torch.optim.AdamW([{"params": heads, "lr": tc.lr}, {"params": body, "lr": tc.backbone_lr}],
                                  weight_decay=tc.weight_decay)
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    net.to(memory_format=torch.channels_last)
    model = torch.nn.parallel.DistributedDataParallel(net) if world > 1 else net
    batches = BatchMaker(training_items(dataset, splits), mconfig.transform(), seed=recipe.seed,
                         batch_brands=tc.batch_brands, genuine_per_brand=tc.genuine_per_brand,
                         counterfeits_per_brand=tc.counterfeits_per_brand,
                         references_per_brand=tc.references_per_brand if weights["patch_rank"] else 0)
    result = TrainResult(TrainState(), splits, mconfig, rank, precision, dataset)
    state = result.state
    checkpoint_path = recipe.out / CHECKPOINT
    if resume and checkpoint_path.exists():
        saved = load_checkpoint(checkpoint_path)
        net.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        state.__dict__.update(saved["state"])
    if rank == 0:
        recipe.out.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(recipe.out / "config.resolved.yaml", recipe.to_yaml().encode())
        atomic_write_bytes(recipe.out / "splits.json", json.dumps(splits.__dict__, indent=2).encode())

    features = recipe.calibration.features
    val_set = result.validation_set()
    stop = False
    with progress.bar(total=tc.steps, initial=state.step, desc="training", unit="step", here=rank == 0) as bar:
        while state.step < tc.steps and not stop:
            step = state.step
            for group, base in zip(optimizer.param_groups, base_lrs):
                group["lr"] = base * lr_factor(step, tc.steps, tc.warmup_steps)
            batch = batches.batch(step, rank)
            torch.manual_seed(hash((recipe.seed, rank, step)) % (2**63))  # the feature dropout, reproducible per step
            losses = step_losses(model, batch, weights, tc, precision)
            loss = sum(weights[name] * value for name, value in losses.items())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for p in net.parameters() if p.requires_grad], tc.grad_clip)
            optimizer.step()
            state.step = step + 1
            record = {"step": step + 1, "loss": loss.item(), **{name: value.item() for name, value in losses.items()}}
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.3f}")
            if state.step % tc.eval_every == 0 or state.step == tc.steps:
                flag = torch.zeros(1)
                if rank == 0:
                    record["val_auroc"] = validation_auroc(validation_rows(net, mconfig, val_set, features, precision), features)
                    if record["val_auroc"] > state.best_auroc:
                        state.best_auroc, state.bad_evals = record["val_auroc"], 0
                        save_checkpoint(recipe.out / BEST, {"model": net.state_dict(), "step": state.step,
                                                            "val_auroc": record["val_auroc"]})
                    else:
                        state.bad_evals += 1
                    flag[0] = float(state.bad_evals >= tc.patience)
                    bar.write(f"step {state.step}: validation ROC-AUC {record['val_auroc']:.4f} (best {state.best_auroc:.4f})")
                if world > 1:
                    dist.broadcast(flag, 0)
                stop = bool(flag[0])
            state.history.append(record)
            paused = tc.stop_after is not None and state.step >= tc.stop_after
            if rank == 0 and (state.step % tc.eval_every == 0 or stop or paused or state.step == tc.steps):
                save_checkpoint(checkpoint_path, {"model": net.state_dict(), "optimizer": optimizer.state_dict(),
                                                  "state": asdict(state)})
            if paused:
                break
    if rank == 0:
        plot_curves(state.history, recipe.out / "training_curves.png")
        atomic_write_bytes(recipe.out / "history.json", json.dumps(state.history, indent=1).encode())
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return result


def step_losses(model, batch, weights: dict[str, float], tc: TrainSection, precision: str) -> dict[str, torch.Tensor]:
    """The enabled losses of one batch: listing photos and, for the patch loss, their brands' references."""
    n = len(batch.labels)
    pixels = torch.cat([batch.pixels, batch.reference_pixels]).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        embeddings, logits, patches = model(pixels)
    embeddings = embeddings.float()
    losses = {}
    if weights["supcon"]:
        losses["supcon"] = supcon_loss(embeddings[:n], batch.identities, tc.temperature)
    if weights["head_bce"]:
        labels = batch.labels
        positives = labels.sum().clamp(min=1.0)
        losses["head_bce"] = F.binary_cross_entropy_with_logits(logits[:n].float(), labels,
                                                                pos_weight=(len(labels) - positives) / positives)
    if weights["patch_rank"]:
        listing = ~batch.is_reference  # a reference against its own gallery would be trivially genuine
        anomalies = batch_patch_anomalies(patches[:n][listing].float(), embeddings[:n][listing], batch.brands[listing],
                                          patches[n:].float(), embeddings[n:], batch.reference_brands)
        losses["patch_rank"] = ranking_loss(anomalies, batch.labels[listing], tc.patch_temperature)
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


def finish(recipe: Recipe, result: TrainResult, *, provenance: dict | None = None) -> Path:
    """Best weights -> calibration on validation brands -> model folder -> benchmark metrics."""
    from training.export import export_model

    mconfig, splits = result.model_config, result.splits
    net = build_net(mconfig, pretrained=False)
    net.load_state_dict(load_checkpoint(recipe.out / BEST)["model"])
    freeze_early_layers(net, recipe.model.train_from_block)  # the model file keeps only what trained
    net.eval()
    features = recipe.calibration.features
    rows = validation_rows(net, mconfig, result.validation_set(), features, result.precision)
    calibration = fit_calibration(rows, features, suspicious_fpr=recipe.calibration.suspicious_fpr,
                                  counterfeit_fpr=recipe.calibration.counterfeit_fpr,
                                  notes=f"fitted on {len(rows)} photos of the validation brands {list(splits.val_brands)}, "
                                        f"kinds {list(splits.train_kinds + splits.val_kinds)}")
    return export_model(recipe, mconfig, calibration, net, result, provenance=provenance or {})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cfd train", description="Fine-tune and export a model folder.")
    parser.add_argument("--config", required=True)
    parser.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint")
    parser.add_argument("-q", "--quiet", action="store_true")
    parser.add_argument("overrides", nargs="*", help="key=value, e.g. train.steps=50")
    args = parser.parse_args(argv)
    progress.show_progress(not args.quiet)
    try:
        run_from_args(args)
    except DetectorError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    return 0


def run_from_args(args) -> None:
    recipe = load_config(args.config, args.overrides)
    started = time.time()
    result = train(recipe, resume=args.resume)
    if result.rank != 0:
        return
    if not result.finished(recipe):
        print(f"paused at step {result.state.step}; continue with --resume", file=sys.stderr)
        return
    command = " ".join(["cfd train --config", str(args.config), *(["--resume"] if args.resume else []), *args.overrides])
    provenance = {"command": command, "wall_s_to_export": round(time.time() - started), "resumed": bool(args.resume)}
    folder = finish(recipe, result, provenance=provenance)
    print(f"exported {folder} in {time.time() - started:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
