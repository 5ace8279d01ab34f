"""Training losses: supervised contrastive (Khosla et al., 2020) with negatives-only samples, and
a ranking loss on the patch anomaly of listing photos against their brand's references."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from detector.patches import patch_anomaly
from detector.scoring import PATCH_REFERENCES


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


def batch_patch_anomalies(query_records: torch.Tensor, query_vectors: torch.Tensor, query_brands: torch.Tensor,
                          reference_records: torch.Tensor, reference_vectors: torch.Tensor,
                          reference_brands: torch.Tensor) -> torch.Tensor:
    """Each photo's patch anomaly against the closest references of its brand, chosen as the
    service chooses them: by embedding similarity."""
    anomalies = []
    for i in range(len(query_records)):
        own = torch.nonzero(reference_brands == query_brands[i]).squeeze(1)
        similarity = (reference_vectors[own] @ query_vectors[i]).detach()
        closest = own[torch.argsort(similarity, descending=True)[:PATCH_REFERENCES]]
        anomalies.append(patch_anomaly(query_records[i], reference_records[closest]))
    return torch.stack(anomalies)


def ranking_loss(scores: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean logistic loss over every (counterfeit, genuine) pair: a smooth 1 - ROC-AUC."""
    fake, real = scores[labels > 0.5], scores[labels < 0.5]
    if len(fake) == 0 or len(real) == 0:
        return scores.sum() * 0.0
    return F.softplus((real[None, :] - fake[:, None]) / temperature).mean()
