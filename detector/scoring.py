"""Per-photo evidence signals and their fusion into a calibrated counterfeit probability.

Each signal is one number per photo. The fusion (logistic weights over named signals) and the
verdict thresholds come from the model's ``calibration.json``, never from code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from detector.embedder import Embeddings
from detector.index import GalleryIndex, Hits
from detector.model_folder import Calibration
from detector.patches import patch_anomaly_np

GENUINE, SUSPICIOUS, COUNTERFEIT, UNVERIFIABLE = "genuine", "suspicious", "counterfeit", "unverifiable"
NEAREST_PER_PHOTO = 3
# The patch signal compares a photo with its closest references of the claimed brand (by embedding).
PATCH_REFERENCES = 3

PatchLookup = Callable[[list[int]], dict[int, np.ndarray]]
# Flags that come with a reason of their own; other suspicious photos get the general one.
EXPLAINED_FLAGS = frozenset({"brand_mismatch", "low_similarity", "local_mismatch"})


@dataclass
class PhotoEvidence:
    index: int
    signals: dict[str, float]
    predicted_brand: str | None
    predicted_similarity: float | None
    nearest: list[tuple[int, float]]  # (reference id, similarity), best first
    flags: list[str] = field(default_factory=list)
    counterfeit_score: float | None = None


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def fuse(signals: dict[str, float], calibration: Calibration) -> float:
    z = calibration.bias + sum(w * signals[name] for name, w in zip(calibration.features, calibration.weights))
    return sigmoid(z)


def verdict_for(score: float, calibration: Calibration) -> str:
    if score >= calibration.counterfeit_threshold:
        return COUNTERFEIT
    if score >= calibration.suspicious_threshold:
        return SUSPICIOUS
    return GENUINE


def gather_evidence(
    index: GalleryIndex,
    photos: Embeddings,
    brand: str | None,
    calibration: Calibration,
    *,
    reference_patches: PatchLookup | None = None,
) -> list[PhotoEvidence]:
    """Search the gallery for each photo and compute its signals against ``brand``.

    With ``brand`` None or without references, only the predicted brand is filled in.
    ``reference_patches`` gives the stored patch records of references by id; with it and a model
    that has a patch head, each photo also gets the ``patch_anomaly`` signal.
    """
    embeddings, head_logits = photos.vectors, photos.logits
    top_k = max(calibration.top_k, NEAREST_PER_PHOTO, PATCH_REFERENCES)
    overall = index.search(embeddings, 1)
    verifiable = brand is not None and index.brand_size(brand) > 0
    own: list[Hits] = index.search_brand(embeddings, brand, top_k) if verifiable else []
    others: list[Hits] = index.search_other_brands(embeddings, brand, 1) if verifiable else []
    patch_records: dict[int, np.ndarray] = {}
    if verifiable and photos.patches is not None and reference_patches is not None:
        patch_records = reference_patches(sorted({int(i) for hits in own for i in hits.ids[:PATCH_REFERENCES]}))
    evidence = []
    for i in range(len(embeddings)):
        best = overall[i]
        predicted = index.brand_of(int(best.ids[0])) if len(best.ids) else None
        predicted_sim = float(best.similarities[0]) if len(best.ids) else None
        item = PhotoEvidence(i, {}, predicted, predicted_sim, [])
        if verifiable:
            sims = own[i].similarities
            brand_sim = float(sims[0])
            other = others[i]
            other_sim = float(other.similarities[0]) if len(other.ids) else None
            # With no other brand in the gallery, compare with the calibrated typical best impostor.
            impostor = other_sim if other_sim is not None else calibration.extra.get("default_other_similarity", brand_sim)
            if other_sim is None:
                item.flags.append("single_brand_gallery")
            item.signals = {
                "brand_similarity": brand_sim,
                "brand_topk_similarity": float(np.mean(sims[: calibration.top_k])),
                "other_brand_similarity": impostor,
                "brand_margin": brand_sim - impostor,
            }
            if head_logits is not None:
                item.signals["head_logit"] = float(head_logits[i])
            closest = [patch_records[int(r)] for r in own[i].ids[:PATCH_REFERENCES] if int(r) in patch_records]
            if closest:
                item.signals["patch_anomaly"] = patch_anomaly_np(photos.patches[i], closest)
                high = calibration.extra.get("high_patch_anomaly")
                if high is not None and item.signals["patch_anomaly"] > float(high):
                    item.flags.append("local_mismatch")
            nearest = list(zip(own[i].ids.tolist()[:NEAREST_PER_PHOTO], sims.tolist()[:NEAREST_PER_PHOTO]))
            if other_sim is not None and other_sim > brand_sim:
                item.flags.append("brand_mismatch")
                nearest.append((int(other.ids[0]), other_sim))
                item.predicted_brand, item.predicted_similarity = index.brand_of(int(other.ids[0])), other_sim
            else:
                item.predicted_brand, item.predicted_similarity = brand, brand_sim
            item.nearest = sorted(nearest, key=lambda pair: -pair[1])
            missing = [name for name in calibration.features if name not in item.signals]
            if missing:
                raise ValueError(f"calibration needs signals this model does not produce: {missing}")
            item.counterfeit_score = fuse(item.signals, calibration)
            low = calibration.extra.get("low_similarity")
            if low is not None and brand_sim < float(low):
                item.flags.append("low_similarity")
        elif len(best.ids):
            item.nearest = [(int(best.ids[0]), predicted_sim)]
        evidence.append(item)
    return evidence


def listing_score(evidence: list[PhotoEvidence], calibration: Calibration) -> float | None:
    scores = [e.counterfeit_score for e in evidence if e.counterfeit_score is not None]
    if not scores:
        return None
    return max(scores) if calibration.aggregation == "max" else float(np.mean(scores))


def reasons_for(evidence: list[PhotoEvidence], brand: str | None, verdict: str, calibration: Calibration) -> list[str]:
    reasons = []
    for e in evidence:
        if e.counterfeit_score is None:
            continue
        sim = e.signals["brand_similarity"]
        if "brand_mismatch" in e.flags:
            reasons.append(
                f"photo {e.index} looks like {e.predicted_brand}, not {brand} "
                f"(similarity {e.predicted_similarity:.2f} vs {sim:.2f})"
            )
        if "low_similarity" in e.flags:
            reasons.append(f"photo {e.index} is far from every {brand} reference (best similarity {sim:.2f})")
        if "local_mismatch" in e.flags:
            reasons.append(f"photo {e.index}: parts of the closest {brand} references find no match in it "
                           f"(patch anomaly {e.signals['patch_anomaly']:.2f})")
        if "single_brand_gallery" in e.flags:
            reasons.append(f"photo {e.index}: the gallery holds no other brand to compare with, so this check is weaker")
        if not EXPLAINED_FLAGS & set(e.flags) and e.counterfeit_score >= calibration.suspicious_threshold:
            reasons.append(f"photo {e.index} differs from the closest {brand} references (similarity {sim:.2f})")
    if verdict == GENUINE:
        best = max((e for e in evidence if e.counterfeit_score is not None), key=lambda e: e.signals["brand_similarity"])
        reasons.append(f"photo {best.index} matches {brand} references closely (similarity {best.signals['brand_similarity']:.2f})")
    return reasons
