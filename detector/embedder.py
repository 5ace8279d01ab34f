"""Embedding model (a pure nn.Module) and the batched inference wrapper around it."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from detector.backbones import FeatureExtractor
from detector.transforms import EvalTransform


class EmbeddingNet(nn.Module):
    """backbone -> pooled features -> projection -> L2 norm; plus an optional counterfeit head.

    With no projection this is the "zero-shot" model: the pretrained backbone's pooled features.
    """

    def __init__(self, backbone: FeatureExtractor, *, feature_dim: int, embedding_dim: int | None, head: bool):
        super().__init__()
        self.backbone = backbone
        self.projection = nn.Linear(feature_dim, embedding_dim) if embedding_dim else nn.Identity()
        self.head = nn.Linear(feature_dim, 1) if head else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        features = self.backbone(x)
        embedding = F.normalize(self.projection(features).float(), dim=-1)
        logit = self.head(features).float().squeeze(-1) if self.head is not None else None
        return embedding, logit

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Weights that belong in model.safetensors (the classifier of the backbone is dropped)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("backbone.classifier.")}


PRECISIONS = ("auto", "fp32", "bf16")


def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX); emulated bf16 is slow."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str) -> str:
    """'auto' is bf16 on CPUs with native bf16 (metrics checked unchanged, see benchmarks/), else fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "auto":
        return "bf16" if native_bf16() else "fp32"
    return precision


class Embedder:
    """Runs an EmbeddingNet on PIL images in batches, with the model's own eval transform."""

    def __init__(self, net: EmbeddingNet, transform: EvalTransform, *, batch_size: int = 16, precision: str = "fp32",
                 channels_last: bool = True):
        self.transform = transform
        self.batch_size = batch_size
        self.precision = resolve_precision(precision)
        # channels_last is ~1.7x faster on this CPU for the same fp32 arithmetic (benchmarks/)
        self.channels_last = channels_last
        self.net = net.eval().to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)

    @property
    def has_head(self) -> bool:
        return self.net.head is not None

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return self.transform.batch(list(images))

    @torch.inference_mode()
    def embed_tensor(self, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        embeddings, logits = [], []
        for start in range(0, batch.shape[0], self.batch_size):
            chunk = batch[start : start + self.batch_size]
            if self.channels_last:
                chunk = chunk.contiguous(memory_format=torch.channels_last)
            if self.precision == "bf16":
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    emb, logit = self.net(chunk)
            else:
                emb, logit = self.net(chunk)
            embeddings.append(emb.float().numpy())
            if logit is not None:
                logits.append(logit.float().numpy())
        dim = self.embedding_dim
        out = np.concatenate(embeddings) if embeddings else np.zeros((0, dim), np.float32)
        return out.astype(np.float32), (np.concatenate(logits) if logits else None)

    def embed(self, images: Sequence[Image.Image]) -> tuple[np.ndarray, np.ndarray | None]:
        """Images -> (L2-normalised embeddings (N, D) float32, head logits (N,) or None)."""
        if not images:
            return np.zeros((0, self.embedding_dim), np.float32), None
        return self.embed_tensor(self.preprocess(images))

    @property
    def embedding_dim(self) -> int:
        projection = self.net.projection
        return projection.out_features if isinstance(projection, nn.Linear) else self.net.backbone.classifier.in_features
