from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from detector.errors import ModelFolderError
from detector.fusion import Shape, sigmoid
from detector.model_folder import (WEIGHTS_FILE, Calibration, ModelConfig, build_net, default_model_path, load_model,
                                   save_model_folder)
from tests.synthetic import product_image


def _finetuned_config(name="tiny-finetune") -> ModelConfig:
    base = json.loads((default_model_path() / "config.json").read_text())
    base.update(name=name, version="0.0.1", embedding_dim=32, head=True, patch_dim=16, weights=WEIGHTS_FILE)
    return ModelConfig.from_dict(base, source="test")


def test_default_model_loads_with_its_calibration(zero_shot):
    assert zero_shot.name == "zero-shot-efficientnet-lite0"
    assert zero_shot.config.output_dim == 1280
    assert zero_shot.calibration.suspicious_threshold <= zero_shot.calibration.counterfeit_threshold


def test_export_then_load_gives_identical_embeddings(tmp_path, zero_shot):
    config = _finetuned_config()
    torch.manual_seed(3)
    net = build_net(config, pretrained=True)
    with torch.no_grad():
        net.projection.weight.normal_()
        net.head.weight.normal_()
        net.patch_head.attention.weight.normal_()
    save_model_folder(tmp_path / "m", config=config, calibration=zero_shot.calibration, metrics={"auc": 0.5},
                      model_card="# test\n", net=net)
    loaded = load_model(tmp_path / "m")
    assert all((p.stat().st_mode & 0o777) == 0o644 for p in (tmp_path / "m").iterdir())  # readable by others
    images = [product_image("acme", 1), product_image("orbit", 2)]
    from detector.embedder import Embedder

    # fp32: the round trip must be bit-exact (bf16 kernels may round differently run to run)
    before = Embedder(net.eval(), config.transform(), precision="fp32").embed(images)
    after = replace(loaded, precision="fp32").embedder().embed(images)
    for field in ("vectors", "logits", "patches"):
        np.testing.assert_array_equal(getattr(before, field), getattr(after, field))
    after_emb = after.vectors
    assert after_emb.shape == (2, 32)
    assert loaded.fingerprint != zero_shot.fingerprint


@pytest.mark.parametrize("missing", ["config.json", "calibration.json", "metrics.json", "MODEL_CARD.md"])
def test_missing_file_is_named(tmp_path, missing):
    folder = tmp_path / "m"
    shutil.copytree(default_model_path(), folder)
    (folder / missing).unlink()
    with pytest.raises(ModelFolderError, match=missing):
        load_model(folder)


def test_missing_weights_file_is_named(tmp_path, zero_shot):
    config = _finetuned_config()
    save_model_folder(tmp_path / "m", config=config, calibration=zero_shot.calibration, metrics={}, model_card="x",
                      net=build_net(config, pretrained=False))
    (tmp_path / "m" / WEIGHTS_FILE).unlink()
    with pytest.raises(ModelFolderError, match=WEIGHTS_FILE):
        load_model(tmp_path / "m")


def test_weights_that_do_not_match_config_are_rejected(tmp_path, zero_shot):
    config = _finetuned_config()
    save_model_folder(tmp_path / "m", config=config, calibration=zero_shot.calibration, metrics={}, model_card="x",
                      net=build_net(config, pretrained=False))
    data = json.loads((tmp_path / "m" / "config.json").read_text())
    data["embedding_dim"] = 64
    (tmp_path / "m" / "config.json").write_text(json.dumps(data))
    with pytest.raises(ModelFolderError, match="shape"):
        load_model(tmp_path / "m")


def test_calibration_thresholds_must_be_ordered():
    with pytest.raises(ModelFolderError, match="thresholds"):
        Calibration.from_dict({"features": [], "weights": [], "bias": 0,
                               "thresholds": {"suspicious": 0.9, "counterfeit": 0.5}}, source="c")


def test_unknown_backbone_in_config(tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(default_model_path(), folder)
    data = json.loads((folder / "config.json").read_text())
    data["backbone"] = "nope"
    (folder / "config.json").write_text(json.dumps(data))
    with pytest.raises(Exception, match="valid backbones"):
        load_model(folder)


def test_a_calibration_that_needs_a_signal_the_model_cannot_produce_is_rejected_at_load(tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(default_model_path(), folder)
    calibration = json.loads((folder / "calibration.json").read_text())
    calibration.update(features=["brand_margin", "patch_anomaly"], weights=[-5.0, 3.0])
    (folder / "calibration.json").write_text(json.dumps(calibration))
    with pytest.raises(ModelFolderError, match="patch_anomaly"):
        load_model(folder)


def test_calibration_names_only_known_signals_and_gives_the_single_brand_stand_in():
    base = {"weights": [-1.0], "bias": 0, "thresholds": {"suspicious": 0.5, "counterfeit": 0.9}}
    with pytest.raises(ModelFolderError, match="unknown signals"):
        Calibration.from_dict({**base, "features": ["brand_margn"]}, source="c")
    with pytest.raises(ModelFolderError, match="default_other_similarity"):
        Calibration.from_dict({**base, "features": ["brand_margin"]}, source="c")
    calibration = Calibration.from_dict({**base, "features": ["brand_margin"], "extra": {"default_other_similarity": 0.7,
                                                                                         "fitted_on": 3}}, source="c")
    assert calibration.default_other_similarity == 0.7 and calibration.extra == {"fitted_on": 3}
    assert Calibration.from_dict(calibration.to_dict(), source="round trip") == calibration


def test_a_frozen_backbone_is_not_saved_and_loads_from_the_registry(tmp_path, zero_shot):
    """Only tensors that train go into model.safetensors; the frozen backbone comes back from its pretrained weights."""
    from safetensors.torch import load_file

    from detector.embedder import Embedder

    config = _finetuned_config()
    torch.manual_seed(4)
    net = build_net(config, pretrained=True)
    for parameter in net.backbone.parameters():
        parameter.requires_grad = False
    save_model_folder(tmp_path / "m", config=config, calibration=zero_shot.calibration, metrics={}, model_card="x", net=net)
    saved = load_file(str(tmp_path / "m" / WEIGHTS_FILE))
    assert saved and not any(k.startswith("backbone.") for k in saved)
    assert {k.split(".")[0] for k in saved} == {"projection", "head", "patch_head"}
    images = [product_image("acme", 1)]
    before = Embedder(net.eval(), config.transform(), precision="fp32").embed(images)
    after = replace(load_model(tmp_path / "m"), precision="fp32").embedder().embed(images)
    for field in ("vectors", "logits", "patches"):
        np.testing.assert_array_equal(getattr(before, field), getattr(after, field))


def test_a_weights_file_without_the_heads_is_rejected(tmp_path, zero_shot):
    from safetensors.torch import load_file, save_file

    config = _finetuned_config()
    save_model_folder(tmp_path / "m", config=config, calibration=zero_shot.calibration, metrics={}, model_card="x",
                      net=build_net(config, pretrained=False))
    state = {k: v for k, v in load_file(str(tmp_path / "m" / WEIGHTS_FILE)).items() if not k.startswith("patch_head.")}
    save_file(state, str(tmp_path / "m" / WEIGHTS_FILE))
    with pytest.raises(ModelFolderError, match="patch_head"):
        load_model(tmp_path / "m")


def test_a_shape_is_a_step_function_and_a_calibration_with_shapes_round_trips():
    shape = Shape((1.0, 2.0), (-1.0, 0.0, 3.0))
    assert [shape(x) for x in (0.5, 1.0, 1.5, 2.0, 9.0)] == [-1.0, 0.0, 0.0, 3.0, 3.0]
    data = {"features": ["brand_margin"], "weights": [1.0], "bias": 0.5, "extra": {"default_other_similarity": 0.7},
            "shapes": {"brand_margin": {"thresholds": [0.0, 0.1], "values": [2.0, 0.0, -1.0]}},
            "thresholds": {"suspicious": 0.5, "counterfeit": 0.9}}
    calibration = Calibration.from_dict(data, source="c")
    assert calibration.fuse({"brand_margin": 0.05}) == pytest.approx(sigmoid(0.5))
    assert calibration.fuse({"brand_margin": -0.2}) == pytest.approx(sigmoid(2.5))
    assert Calibration.from_dict(calibration.to_dict(), source="round trip") == calibration


@pytest.mark.parametrize("shape, weight, message", [
    ({"thresholds": [0.1, 0.0], "values": [2.0, 1.0, 0.0]}, 1.0, "thresholds must increase"),
    ({"thresholds": [0.0], "values": [1.0]}, 1.0, "1 thresholds need 2 values"),
    ({"thresholds": [0.0], "values": [0.0, 1.0]}, 1.0, "values must fall with the signal"),
    ({"thresholds": [0.0], "values": [1.0, float("nan")]}, 1.0, "finite"),
    ({"thresholds": [0.0], "values": [1.0, 0.0]}, -1.0, "must not be negative"),
])
def test_a_shape_that_breaks_its_signals_meaning_is_refused_at_load(shape, weight, message):
    data = {"features": ["brand_margin"], "weights": [weight], "bias": 0.0, "extra": {"default_other_similarity": 0.7},
            "shapes": {"brand_margin": shape}, "thresholds": {"suspicious": 0.5, "counterfeit": 0.9}}
    with pytest.raises(ModelFolderError, match=message):
        Calibration.from_dict(data, source="c")
    aligned = {**data, "shapes": {}, "aligned": {"features": ["brand_margin"], "weights": [weight], "bias": 0.0,
                                                 "shapes": {"brand_margin": shape}}}
    with pytest.raises(ModelFolderError, match="aligned: .*" + message):
        Calibration.from_dict(aligned, source="c")


def test_a_shape_of_a_signal_the_fusion_does_not_read_is_refused():
    data = {"features": ["brand_margin"], "weights": [1.0], "bias": 0.0, "extra": {"default_other_similarity": 0.7},
            "shapes": {"brand_similarity": {"thresholds": [], "values": [0.0]}},
            "thresholds": {"suspicious": 0.5, "counterfeit": 0.9}}
    with pytest.raises(ModelFolderError, match="does not read"):
        Calibration.from_dict(data, source="c")
