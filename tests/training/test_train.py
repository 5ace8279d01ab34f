"""Training: smoke run, exact resume, export round trip, leakage-free splits, DDP on CPU."""

from __future__ import annotations

import json
import os
from dataclasses import replace
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from detector.errors import InvalidInputError
from detector.evaluation.dataset import load_dataset
from detector.model_folder import build_net, load_model
from training.config import load_config
from training.data import make_splits, subset, training_items
from training.synth.generate import SynthConfig, generate
from training.train import load_checkpoint, train
from training.train import model_config as load_config_model
from tests.synthetic import product_image

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "training" / "configs" / "small.yaml"
CFD = str(Path(sys.executable).parent / "cfd")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("train") / "data"
    generate(root, SynthConfig(brands=5, seed=21, references=2, genuine=3, per_severity=1, size=96))
    return root


def _overrides(data, tmp, steps=1, **extra):
    # two of the five brands validate: brand_margin needs another brand in the validation gallery
    items = {"data.root": data, "data.synth": "null", "data.val_brand_fraction": 0.4, "train.steps": steps, "train.eval_every": 1, "train.batch_brands": 2,
             "train.genuine_per_brand": 2, "train.counterfeits_per_brand": 1, "train.warmup_steps": 1,
             "train.precision": "fp32", "out": tmp / "run", "export": tmp / "model", "evaluate": "[]", **extra}
    return [f"{k}={v}" for k, v in items.items()]


def test_one_step_smoke_then_export_roundtrip(tiny_data, tmp_path):
    result = subprocess.run([CFD, "train", "--config", str(RECIPE), "-q", *_overrides(tiny_data, tmp_path)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    run, folder = tmp_path / "run", tmp_path / "model"
    for name in ("checkpoint.pt", "best.pt", "config.resolved.yaml", "training_curves.png", "splits.json", "history.json"):
        assert (run / name).exists(), name
    assert "train.steps" not in (run / "config.resolved.yaml").read_text() and "steps: 1" in (run / "config.resolved.yaml").read_text()
    model = load_model(folder)
    # the default recipe: frozen backbone and pooled features, a trained patch head
    assert model.config.embedding_dim is None and not model.config.head and model.config.patch_dim == 128
    assert model.calibration.features == ("brand_similarity", "brand_margin", "patch_anomaly")
    assert "## Measured against the zero-shot model" in (folder / "MODEL_CARD.md").read_text()
    # the exported weights are exactly the best checkpoint's
    net = build_net(model.config, pretrained=False)
    net.load_state_dict(load_checkpoint(run / "best.pt")["model"])
    from detector.embedder import Embedder

    images = [product_image("acme", 1), product_image("zenit", 2)]
    expected = Embedder(net.eval(), model.config.transform(), precision="fp32").embed(images)
    got = replace(model, precision="fp32").embedder().embed(images)
    np.testing.assert_array_equal(expected.vectors, got.vectors)
    np.testing.assert_array_equal(expected.patches, got.patches)
    assert got.patches.shape == (2, 14 * 14, 129)


def test_resume_reproduces_the_uninterrupted_run(tiny_data, tmp_path):
    straight = load_config(RECIPE, _overrides(tiny_data, tmp_path / "a", steps=2))
    train(straight)
    paused = load_config(RECIPE, _overrides(tiny_data, tmp_path / "b", steps=2, **{"train.stop_after": 1}))
    first = train(paused)
    assert first.state.step == 1
    resumed = load_config(RECIPE, _overrides(tiny_data, tmp_path / "b", steps=2))
    train(resumed, resume=True)
    a = load_checkpoint(tmp_path / "a" / "run" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "b" / "run" / "checkpoint.pt")
    assert a["state"]["step"] == b["state"]["step"] == 2
    for key, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][key]), key
    assert [h["loss"] for h in a["state"]["history"]] == [h["loss"] for h in b["state"]["history"]]
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()


def test_splits_have_no_leakage(tiny_data):
    dataset = load_dataset(tiny_data)
    splits = make_splits(dataset, seed=3, val_brand_fraction=0.4, val_kinds=["material"], holdout_kinds=["wordmark", "placement"])
    assert set(splits.train_brands).isdisjoint(splits.val_brands)
    assert set(splits.train_brands) | set(splits.val_brands) == set(dataset.brands)
    assert not {"material", "wordmark", "placement"} & set(splits.train_kinds)
    items = training_items(dataset, splits)
    assert set(items) == set(splits.train_brands)
    trained_paths = {it.path for genuine, fakes in items.values() for it in genuine + fakes}
    for sample in dataset.samples:
        if sample.brand in splits.val_brands or sample.kind in ("material", "wordmark", "placement"):
            assert sample.path not in trained_paths
    val = subset(dataset, splits.val_brands, splits.train_kinds + splits.val_kinds)
    assert {s.kind for s in val.samples if s.label} <= set(splits.train_kinds + splits.val_kinds)
    assert make_splits(dataset, seed=3, val_brand_fraction=0.4, val_kinds=["material"], holdout_kinds=[]) != splits


def test_bad_overrides_are_clear_errors():
    with pytest.raises(InvalidInputError, match="no such key"):
        load_config(RECIPE, ["train.stepz=3"])
    with pytest.raises(InvalidInputError, match="key=value"):
        load_config(RECIPE, ["train.steps"])
    result = subprocess.run([CFD, "train", "--config", str(RECIPE), "model.nope=1"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and result.stderr.startswith("error:")
    with pytest.raises(InvalidInputError, match="train.steps"):
        load_config(RECIPE, ["train.steps=many"])


def test_a_misspelt_recipe_key_is_an_error_and_defaults_are_explicit(tmp_path):
    text = RECIPE.read_text()
    misspelt = tmp_path / "misspelt.yaml"
    misspelt.write_text(text.replace("  patch_weight:", "  patch_wieght:"))
    with pytest.raises(InvalidInputError, match="patch_wieght"):
        load_config(misspelt)
    no_head = tmp_path / "no-head.yaml"
    no_head.write_text("\n".join(line for line in text.splitlines() if not line.startswith("  head:")))
    assert load_config(no_head).model.head is False  # leaving it out adds no head
    assert load_config(RECIPE, ["model.train_from_block=4"]).model.train_from_block == 4


def test_distributed_two_processes_on_cpu(tiny_data, tmp_path):
    torchrun = str(Path(sys.executable).parent / "torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([torchrun, "--standalone", "--nproc_per_node=2", "-m", "training.train", "--config", str(RECIPE),
                             "-q", *_overrides(tiny_data, tmp_path, steps=2)],
                            capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [h["step"] for h in history] == [1, 2]
    assert load_model(tmp_path / "model").config.patch_dim == 128


def test_projection_head_and_backbone_blocks_train_too(tiny_data, tmp_path):
    """A recipe that also trains a projection (SupCon), a counterfeit head and the last blocks."""
    config = load_config(RECIPE, _overrides(tiny_data, tmp_path, **{"model.embedding_dim": 32, "model.head": "true",
                                                                     "model.train_from_block": 6}))
    before = build_net(load_config_model(config), pretrained=True).state_dict()
    train(config)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert {"supcon", "head_bce", "patch_rank"} <= set(history[0])
    after = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["model"]
    changed = {k.split(".")[0] if not k.startswith("backbone.") else ".".join(k.split(".")[:4])
               for k in after if k in before and not torch.equal(after[k], before[k])}
    assert {"projection", "head", "patch_head", "backbone.model.blocks.6"} <= changed
    assert not any(k.startswith(("backbone.model.blocks.5", "backbone.model.conv_stem")) for k in changed)
