"""Patch-level evidence: does every part of the closest references reappear in the listing photo?

A trained ``PatchHead`` turns the backbone's mid-level feature maps into one unit descriptor per
patch (a 14 x 14 grid at 224 px) plus an attention logit that says how much that patch matters.
The anomaly of a photo against one reference is the attention-weighted mean, over the
reference's patches, of ``1 - best cosine match anywhere in the photo``. Matching from the
reference to the photo (not the other way) keeps the photo's own background out of the score,
and "anywhere" makes it indifferent to pose. A changed logo, colour or print leaves some
reference patches without a match. Over several references the softest minimum is kept: a
genuine photo needs to explain only one reference of its own colourway.

A patch record is one array ``(P, D + 1)``: the descriptor, then the attention logit.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# How hard the soft minimum over references is (a temperature of 1/20 on anomalies in [0, 2]).
SOFTMIN_SHARPNESS = 20.0


class PatchHead(nn.Module):
    """Feature maps (B, C, H, W) -> patch records (B, H*W, dim + 1)."""

    def __init__(self, in_channels: int, dim: int, hidden: int = 256):
        super().__init__()
        self.dim = dim
        self.norm = nn.LayerNorm(in_channels)
        self.projection = nn.Sequential(nn.Linear(in_channels, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.attention = nn.Linear(in_channels, 1)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        # a 3 x 3 neighbourhood per patch: robust to the half-patch shifts of a new photo
        maps = F.avg_pool2d(maps.float(), 3, stride=1, padding=1, count_include_pad=False)
        h = self.norm(maps.flatten(2).transpose(1, 2))
        return torch.cat([F.normalize(self.projection(h), dim=-1), self.attention(h)], dim=-1)


def reference_anomaly(query: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Anomaly of one photo's patch records (P, D+1) against one reference's (P', D+1)."""
    similarity = reference[:, :-1] @ query[:, :-1].T
    unmatched = 1.0 - similarity.max(dim=1).values
    return (torch.softmax(reference[:, -1], dim=0) * unmatched).sum()


def patch_anomaly(query: torch.Tensor, references: list[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    """Soft minimum of the anomaly over references: the best explanation of the photo wins."""
    values = torch.stack([reference_anomaly(query, r) for r in references])
    return -torch.logsumexp(-SOFTMIN_SHARPNESS * values, dim=0) / SOFTMIN_SHARPNESS + (
        torch.log(torch.tensor(float(len(values)))) / SOFTMIN_SHARPNESS)


def patch_anomaly_np(query: np.ndarray, references: list[np.ndarray]) -> float:
    """The same for stored float16 records at check time."""
    with torch.inference_mode():
        return float(patch_anomaly(torch.from_numpy(query.astype(np.float32)),
                                   [torch.from_numpy(r.astype(np.float32)) for r in references]))
