"""Fold each BatchNorm into the convolution before it, for inference.

In eval mode a BatchNorm is a per-channel scale and shift, which the convolution's weights and
bias can absorb exactly (in exact arithmetic). On a 2-core CPU the separate BatchNorm passes were
about a third of EfficientNet-Lite's time; folded, the fp32 embedder runs 1.5x faster with the
same metrics (``benchmarks/embedding_speed.py``; bf16 is not folded, see ``Embedder``).

The pairs are found by registration order: a ``Conv2d`` followed, in the same parent, by a
``BatchNorm2d`` that normalises its output, which is how timm's EfficientNet blocks register
them. ``tests/test_batchnorm_folding.py`` checks every registered backbone's folded output
against the original.
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


class AfterNorm(nn.Module):
    """What a folded norm still applies after normalising: timm's ``BatchNormAct2d`` adds dropout
    and an activation; a plain ``BatchNorm2d`` adds nothing."""

    def __init__(self, norm: nn.BatchNorm2d):
        super().__init__()
        self.drop = getattr(norm, "drop", None) or nn.Identity()
        self.act = getattr(norm, "act", None) or nn.Identity()

    def forward(self, x):
        return self.act(self.drop(x))


def fold_batchnorm(module: nn.Module) -> int:
    """Fold, in place, every BatchNorm registered right after a convolution into it; ``module``
    must be in eval mode (the running statistics are what is folded). Returns the pairs folded."""
    if module.training:
        raise ValueError("fold BatchNorm only into a module in eval mode")
    folded = 0
    for parent in list(module.modules()):
        names = list(parent._modules)
        for conv_name, norm_name in zip(names, names[1:]):
            conv, norm = parent._modules[conv_name], parent._modules[norm_name]
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d) and norm.num_features == conv.out_channels:
                parent._modules[conv_name] = fuse_conv_bn_eval(conv, norm)
                parent._modules[norm_name] = AfterNorm(norm)
                folded += 1
    return folded
