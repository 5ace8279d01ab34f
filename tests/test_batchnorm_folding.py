from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from detector.backbones import available_backbones, build_backbone
from detector.batchnorm_folding import fold_batchnorm
from detector.embedder import Embedder
from tests.synthetic import product_image


def _norms(module: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in module.modules())


def _with_random_statistics(module: nn.Module, seed: int = 0) -> nn.Module:
    """Norms whose statistics and affine terms are far from the identity, so a wrong fold shows."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for norm in (m for m in module.modules() if isinstance(m, nn.BatchNorm2d)):
            n = norm.num_features
            norm.running_mean.copy_(torch.randn(n, generator=generator) * 0.5)
            norm.running_var.copy_(torch.rand(n, generator=generator) * 2 + 0.2)
            norm.weight.copy_(torch.rand(n, generator=generator) + 0.5)
            norm.bias.copy_(torch.randn(n, generator=generator) * 0.2)
    return module.eval()


@pytest.mark.parametrize("name", available_backbones())
def test_every_registered_backbone_folds_all_its_norms_and_computes_the_same(name):
    backbone = _with_random_statistics(build_backbone(name, pretrained=False))
    norms = _norms(backbone)
    folded = copy.deepcopy(backbone)
    assert fold_batchnorm(folded) == norms > 0
    assert _norms(folded) == 0
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = backbone(x), folded(x)
        expected_maps, got_maps = backbone.forward_with_maps(x)[1], folded.forward_with_maps(x)[1]
    torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-3 * float(expected.abs().max()))
    torch.testing.assert_close(got_maps, expected_maps, rtol=1e-3, atol=1e-3 * float(expected_maps.abs().max()))


def test_folding_needs_eval_mode():
    module = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    with pytest.raises(ValueError, match="eval"):
        fold_batchnorm(module)


def test_the_embedder_folds_a_copy_and_keeps_the_embeddings(zero_shot):
    net = zero_shot.net
    norms_before = _norms(net)
    images = [product_image(b, i) for b in ("acme", "zenit") for i in range(3)]
    fp32 = replace(zero_shot, precision="fp32")
    folded = fp32.embedder()
    plain = Embedder(net, fp32.config.transform(), precision="fp32", fold_norms=False)
    assert _norms(folded.net) == 0
    assert _norms(net) == norms_before  # the model's own net is untouched
    cosine = np.sum(folded.embed(images).vectors * plain.embed(images).vectors, axis=1)
    assert cosine.min() > 0.99999
    # bf16 keeps its norms: folded, it moved the metrics
    bf16 = replace(zero_shot, precision="bf16").embedder()
    assert _norms(bf16.net) == norms_before
