from __future__ import annotations

from pathlib import Path

import matplotlib
import pytest
import torch
from PIL import Image

from detector.backbones import available_backbones, build_backbone, get_backbone_spec
from detector.errors import UnknownBackboneError, WeightsError
from detector.transforms import EvalTransform

# ImageNet classes a pretrained model gives the Grace Hopper portrait (formal attire):
# academic gown, bow tie, military uniform, mortarboard, suit
PORTRAIT_CLASSES = {400, 457, 652, 667, 834}


def _grace_hopper_batch(spec) -> torch.Tensor:
    # A natural photo that ships inside matplotlib: no download.
    image = Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("RGB")
    return EvalTransform(spec.weights.input)(image).unsqueeze(0)


def test_unknown_backbone_lists_valid_names():
    with pytest.raises(UnknownBackboneError) as info:
        get_backbone_spec("vgg-nonexistent")
    for name in available_backbones():
        assert name in str(info.value)


def test_registry_knows_a_torchvision_backbone():
    assert "resnet50" in available_backbones()
    assert get_backbone_spec("resnet50").feature_dim == 2048


def test_default_weights_are_the_pretrained_ones():
    spec = get_backbone_spec("efficientnet_lite0")
    x = _grace_hopper_batch(spec)
    with torch.no_grad():
        pretrained = build_backbone("efficientnet_lite0").logits(x).softmax(-1)[0]
        torch.manual_seed(0)
        random = build_backbone("efficientnet_lite0", pretrained=False).logits(x).softmax(-1)[0]
    top5 = set(pretrained.topk(5).indices.tolist())
    assert int(pretrained.argmax()) in PORTRAIT_CLASSES
    assert len(top5 & PORTRAIT_CLASSES) >= 3
    assert pretrained.max() > 0.2  # a confident prediction
    assert int(random.argmax()) not in PORTRAIT_CLASSES
    assert random.max() < 0.15  # random weights give no confident class


def test_pooled_features_shape():
    backbone = build_backbone("efficientnet_lite0")
    with torch.no_grad():
        features = backbone(torch.zeros(2, 3, 224, 224))
    assert features.shape == (2, 1280)


def test_torchvision_backbone_never_downloads_unasked(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(WeightsError, match="allow the download"):
        build_backbone("resnet50")


def test_torchvision_backbone_from_local_file(tmp_path):
    import torchvision

    torch.manual_seed(1)
    reference = torchvision.models.resnet50(weights=None)
    path = tmp_path / "resnet50.pth"
    torch.save(reference.state_dict(), path)
    loaded = build_backbone("resnet50", weights_path=path)
    assert torch.equal(loaded.model.conv1.weight, reference.conv1.weight)
    with torch.no_grad():
        assert loaded(torch.zeros(1, 3, 64, 64)).shape == (1, 2048)


def test_weights_file_that_does_not_fit_is_an_error(tmp_path):
    path = tmp_path / "bad.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, path)
    with pytest.raises(WeightsError, match="does not fit"):
        build_backbone("resnet50", weights_path=path)


@pytest.mark.parametrize("name", ["efficientnet_lite0", "resnet50"])
def test_feature_maps_come_with_the_pooled_features(name):
    backbone = build_backbone(name, pretrained=False).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        pooled, maps = backbone.forward_with_maps(x)
        torch.testing.assert_close(pooled, backbone(x))  # one pass gives both, the same pooled features
    assert maps.shape == (2, backbone.map_channels, 14, 14)  # stride 16: a 14 x 14 grid of patches


@pytest.mark.parametrize("name, train_from, trains, stays", [
    ("efficientnet_lite0", 6, ["blocks.6.0.conv_pw.weight", "conv_head.weight", "bn2.running_mean"],
     ["conv_stem.weight", "bn1.weight", "blocks.5.0.conv_pw.weight", "classifier.weight"]),
    ("resnet50", 3, ["layer3.0.conv1.weight", "layer4.2.bn3.weight"],
     ["conv1.weight", "bn1.weight", "layer1.0.conv1.weight", "layer2.3.bn2.bias", "fc.weight"]),
])
def test_stage_matcher_freezes_the_stem_early_blocks_and_classifier(name, train_from, trains, stays):
    stages = get_backbone_spec(name).stages
    names = dict(build_backbone(name, pretrained=False).model.state_dict())
    for param in trains + stays:
        assert param in names, param  # the matcher is tested against the real architecture's names
    assert not any(stages.frozen(p, train_from) for p in trains)
    assert all(stages.frozen(p, train_from) for p in stays)
    assert all(stages.frozen(p, None) for p in trains + stays)  # None: the whole backbone frozen
