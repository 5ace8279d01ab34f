"""Supervised contrastive loss (Khosla et al., 2020) with negatives-only samples."""

from __future__ import annotations

import torch


def supcon_loss(embeddings: torch.Tensor, identities: torch.Tensor, temperature: float) -> torch.Tensor:
    """``embeddings`` L2-normalised (B, D); ``identities`` (B,), -1 marks a negative-only sample
    (a counterfeit): it is never an anchor or a positive, only a negative for everyone."""
    sim = embeddings @ embeddings.T / temperature
    eye = torch.eye(len(embeddings), dtype=torch.bool, device=embeddings.device)
    sim = sim.masked_fill(eye, float("-inf"))
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    positives = (identities[:, None] == identities[None, :]) & ~eye & (identities[:, None] >= 0)
    counts = positives.sum(1)
    anchors = counts > 0
    if not anchors.any():
        return embeddings.sum() * 0.0
    mean_log_prob = torch.where(positives, log_prob, torch.zeros_like(log_prob)).sum(1)[anchors] / counts[anchors]
    return -mean_log_prob.mean()
