"""Embedding model (a pure nn.Module) and the batched inference wrapper around it."""

from __future__ import annotations

import copy
from typing import NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from detector.backbones import FeatureExtractor
from detector.batchnorm_folding import fold_batchnorm
from detector.compute import ComputeThread
from detector.patches import PatchHead
from detector.precision import resolve_precision
from detector.transforms import EvalTransform

# A frozen backbone runs in pieces of this many images: ~1.9x faster than one batch of 144 on a
# 2-core CPU (the activations stay in cache), and exactly the same result with BatchNorm in eval.
FROZEN_CHUNK = 16


class EmbeddingNet(nn.Module):
    """backbone -> pooled features -> projection -> L2 norm; plus an optional counterfeit head
    and optional patch descriptors (see detector.patches).

    With no projection this is the "zero-shot" model: the pretrained backbone's pooled features.
    """

    def __init__(self, backbone: FeatureExtractor, *, feature_dim: int, embedding_dim: int | None, head: bool,
                 patch_dim: int | None = None):
        super().__init__()
        self.backbone = backbone
        self.projection = nn.Linear(feature_dim, embedding_dim) if embedding_dim else nn.Identity()
        self.head = nn.Linear(feature_dim, 1) if head else None
        self.patch_head = PatchHead(backbone.map_channels, patch_dim) if patch_dim else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """-> (embeddings (B, D), head logits (B,) or None, patch records (B, P, patch_dim + 1) or None)."""
        features, maps = self._backbone(x)
        patches = self.patch_head(maps) if self.patch_head is not None else None
        embedding = F.normalize(self.projection(features).float(), dim=-1)
        logit = self.head(features).float().squeeze(-1) if self.head is not None else None
        return embedding, logit, patches

    def _backbone(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        run = self.backbone if self.patch_head is None else self.backbone.forward_with_maps
        if len(x) <= FROZEN_CHUNK or not self._backbone_frozen():
            out = run(x)
            return (out, None) if self.patch_head is None else out
        with torch.no_grad():
            pieces = [self._backbone(x[i : i + FROZEN_CHUNK]) for i in range(0, len(x), FROZEN_CHUNK)]
        features = torch.cat([f for f, _ in pieces])
        return features, None if self.patch_head is None else torch.cat([m for _, m in pieces])

    def _backbone_frozen(self) -> bool:
        """No gradient and no BatchNorm statistics to update: pieces give exactly the whole batch's result."""
        if any(p.requires_grad for p in self.backbone.parameters()):
            return False
        return not any(m.training for m in self.backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))

    def loadable_state_dict(self) -> dict[str, torch.Tensor]:
        """Every tensor a model file may hold (the backbone's ImageNet classifier is never saved)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("backbone.classifier.")}

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """What model.safetensors holds: the projection and heads, and the backbone tensors training can
        change (learning parameters and the BatchNorm statistics of the modules they belong to).
        The frozen rest comes from the registry's pretrained weights when the model loads."""
        learning = set()
        for module_name, module in self.named_modules():
            own = list(module.parameters(recurse=False))
            if not module_name.startswith("backbone") or any(p.requires_grad for p in own):
                prefix = f"{module_name}." if module_name else ""
                learning.update(prefix + n for n, _ in (*module.named_parameters(recurse=False),
                                                        *module.named_buffers(recurse=False)))
        return {k: v for k, v in self.loadable_state_dict().items() if k in learning}


class Embeddings(NamedTuple):
    vectors: np.ndarray  # (N, D) float32, L2-normalised
    logits: np.ndarray | None  # (N,) counterfeit head
    patches: np.ndarray | None  # (N, P, patch_dim + 1) float16 patch records

    def rows(self, start: int, end: int) -> "Embeddings":
        return Embeddings(*(None if field is None else field[start:end] for field in self))

    def patches_per_photo(self) -> list[np.ndarray | None]:
        """One patch record (or None, without a patch head) per photo, to store beside its vector."""
        return list(self.patches) if self.patches is not None else [None] * len(self.vectors)


class Embedder:
    """Runs an EmbeddingNet on PIL images in batches, with the model's own eval transform."""

    def __init__(self, net: EmbeddingNet, transform: EvalTransform, *, batch_size: int = 16, precision: str = "fp32",
                 channels_last: bool = True, fold_norms: bool = True):
        """Runs a copy of ``net`` made for inference (``net`` itself is left as it is): in eval mode,
        without gradients and, in fp32, with its BatchNorms folded into their convolutions unless
        ``fold_norms`` is False (benchmarks compare both). fp32 folding is 1.5x faster with the same
        metrics; in bf16 it was 1.3x faster but moved grocery-store TPR at 1% FPR from 0.524 to
        0.498, so bf16 keeps its norms."""
        self.transform = transform
        self.batch_size = batch_size
        self.precision = resolve_precision(precision)
        # channels_last is ~1.7x faster on this CPU for the same fp32 arithmetic (benchmarks/)
        self.channels_last = channels_last
        self.net = copy.deepcopy(net).eval().requires_grad_(False)
        if fold_norms and self.precision == "fp32":
            fold_batchnorm(self.net)
        self.net = self.net.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        self.compute: ComputeThread | None = None  # where forward passes run; the calling thread when None

    def run_on(self, compute: ComputeThread) -> None:
        """Run every forward pass on ``compute``'s thread, whichever thread asks (``detector.compute``)."""
        self.compute = compute

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return self.transform.batch(list(images))

    @property
    def patch_record_width(self) -> int | None:
        """Columns of one patch record (descriptor + attention logit), or None without a patch head."""
        return None if self.net.patch_head is None else self.net.patch_head.dim + 1

    def embed_tensor(self, batch: torch.Tensor) -> Embeddings:
        return self._forward(batch) if self.compute is None else self.compute.run(self._forward, batch)

    @torch.inference_mode()
    def _forward(self, batch: torch.Tensor) -> Embeddings:
        embeddings, logits, patches = [], [], []
        for start in range(0, batch.shape[0], self.batch_size):
            chunk = batch[start : start + self.batch_size]
            if self.channels_last:
                chunk = chunk.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16"):
                emb, logit, patch = self.net(chunk)
            embeddings.append(emb.float().numpy())
            if logit is not None:
                logits.append(logit.float().numpy())
            if patch is not None:
                patches.append(patch.float().numpy().astype(np.float16))
        dim = self.embedding_dim
        out = np.concatenate(embeddings) if embeddings else np.zeros((0, dim), np.float32)
        return Embeddings(out.astype(np.float32), np.concatenate(logits) if logits else None,
                          np.concatenate(patches) if patches else None)

    def embed(self, images: Sequence[Image.Image]) -> Embeddings:
        """Images -> embeddings, head logits and patch records (see ``Embeddings``)."""
        if not images:
            return Embeddings(np.zeros((0, self.embedding_dim), np.float32), None, None)
        return self.embed_tensor(self.preprocess(images))

    @property
    def embedding_dim(self) -> int:
        projection = self.net.projection
        return projection.out_features if isinstance(projection, nn.Linear) else self.net.backbone.classifier.in_features
