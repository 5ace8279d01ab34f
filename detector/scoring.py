"""Per-photo evidence against the claimed brand, and a listing's score, verdict and reasons.

Each signal (see ``detector.signals``) is one number per photo. The fusion and the thresholds are
the model's ``Calibration``; the ``Scorer`` holds it with the gallery index it searches.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from detector.alignment.features import ReferenceFeatures, View
from detector.alignment.recipe import DEFAULT_RECIPE, AlignmentRecipe
from detector.alignment.verify import Verification, verify
from detector.embedder import Embeddings
from detector.errors import InvalidInputError
from detector.index import GalleryIndex, Hits
from detector.model_folder import Calibration
from detector.patches import patch_anomaly_np
from detector.results import GENUINE
from detector.signals import OTHER_BRAND_SIGNALS

NEAREST_PER_PHOTO = 3
# The patch signal compares a photo with its closest references of the claimed brand (by embedding).
PATCH_REFERENCES = 3

PatchLookup = Callable[[list[int]], dict[int, np.ndarray]]
FeatureLookup = Callable[[list[int]], dict[int, ReferenceFeatures]]
# Flags that come with a reason of their own; other suspicious photos get the general one.
EXPLAINED_FLAGS = frozenset({"brand_mismatch", "low_similarity", "local_mismatch", "local_difference"})


@dataclass
class PhotoEvidence:
    index: int
    signals: dict[str, float]
    predicted_brand: str | None
    predicted_similarity: float | None
    nearest: list[tuple[int, float]]  # (reference id, similarity), best first
    flags: list[str] = field(default_factory=list)
    counterfeit_score: float | None = None
    verification: Verification | None = None  # None: alignment was not run


@dataclass(frozen=True)
class _Searches:
    """One batched search of every photo: the claimed brand's closest references and the best other brand."""

    own: list[Hits]
    others: list[Hits]


class Scorer:
    """Scores photo embeddings against a brand in ``index`` by ``calibration``.

    ``reference_patches`` gives the stored patch records of references by id; with it and photos
    that carry patch records, each photo also gets the ``patch_anomaly`` signal.
    ``reference_features`` gives references' alignment features by id; with it and the photos'
    views, each photo is also verified against its closest references (``detector.alignment``).
    """

    def __init__(self, calibration: Calibration, index: GalleryIndex, *, reference_patches: PatchLookup | None = None,
                 reference_features: FeatureLookup | None = None, alignment: AlignmentRecipe = DEFAULT_RECIPE):
        self.calibration = calibration
        self.index = index
        self.reference_patches = reference_patches
        self.reference_features = reference_features
        self.alignment = alignment

    def predict_brand(self, photos: Embeddings) -> str | None:
        """The brand most photos match best (None for an empty gallery)."""
        votes = Counter(self.index.brand_of(int(hits.ids[0])) for hits in self.index.search(photos.vectors, 1) if len(hits.ids))
        return votes.most_common(1)[0][0] if votes else None

    def evidence(self, photos: Embeddings, brand: str | None, views: Sequence[View] | None = None) -> list[PhotoEvidence]:
        """Each photo's signals, flags, nearest references and score against ``brand``; ``views``:
        the photos at the alignment's working resolution (None: no aligned verification).

        With ``brand`` None or without references, only the best overall match is filled in."""
        if brand is None or self.index.brand_size(brand) == 0:
            return [self._unverified(i, hits) for i, hits in enumerate(self.index.search(photos.vectors, 1))]
        searches = self._search(photos, brand)
        anomalies = self._patch_anomalies(photos, searches.own)
        verifications = self._verifications(views, searches.own)
        return [self._verified(i, photos, brand, searches, anomalies[i], verifications[i]) for i in range(len(photos.vectors))]

    def listing_score(self, evidence: list[PhotoEvidence]) -> float | None:
        return self.calibration.aggregate([e.counterfeit_score for e in evidence if e.counterfeit_score is not None])

    # --- steps ---

    def _search(self, photos: Embeddings, brand: str) -> _Searches:
        top_k = max(self.calibration.top_k, NEAREST_PER_PHOTO, PATCH_REFERENCES, self.alignment.candidates)
        vectors = photos.vectors
        return _Searches(self.index.search_brand(vectors, brand, top_k), self.index.search_other_brands(vectors, brand, 1))

    def _unverified(self, i: int, best: Hits) -> PhotoEvidence:
        if not len(best.ids):
            return PhotoEvidence(i, {}, None, None, [])
        similarity = float(best.similarities[0])
        return PhotoEvidence(i, {}, self.index.brand_of(int(best.ids[0])), similarity, [(int(best.ids[0]), similarity)])

    def _patch_anomalies(self, photos: Embeddings, own: list[Hits]) -> list[float | None]:
        """``patch_anomaly`` of each photo against its closest references of the brand (None without patch records)."""
        if photos.patches is None or self.reference_patches is None:
            return [None] * len(own)
        records = self.reference_patches(sorted({int(i) for hits in own for i in hits.ids[:PATCH_REFERENCES]}))
        anomalies: list[float | None] = []
        for query, hits in zip(photos.patches, own):
            closest = [records[int(r)] for r in hits.ids[:PATCH_REFERENCES] if int(r) in records]
            anomalies.append(patch_anomaly_np(query, closest) if closest else None)
        return anomalies

    def _verifications(self, views: Sequence[View] | None, own: list[Hits]) -> list[Verification | None]:
        """Each photo aligned with its closest references of the brand (None without views or features)."""
        if views is None or self.reference_features is None:
            return [None] * len(own)
        candidates = [[int(r) for r in hits.ids[: self.alignment.candidates]] for hits in own]
        features = self.reference_features(sorted({r for ids in candidates for r in ids}))
        return [verify(view, {r: features[r] for r in ids if r in features}, self.alignment) for view, ids in zip(views, candidates)]

    def _verified(self, i: int, photos: Embeddings, brand: str, searches: _Searches, anomaly: float | None,
                  verification: Verification | None) -> PhotoEvidence:
        own, other = searches.own[i], searches.others[i]
        brand_sim = float(own.similarities[0])
        other_sim = float(other.similarities[0]) if len(other.ids) else None
        flags = [] if other_sim is not None else ["single_brand_gallery"]
        signals = self._signals(own, other_sim, None if photos.logits is None else float(photos.logits[i]), anomaly)
        if anomaly is not None and self.calibration.high_patch_anomaly is not None and anomaly > self.calibration.high_patch_anomaly:
            flags.append("local_mismatch")
        nearest = list(zip(own.ids.tolist()[:NEAREST_PER_PHOTO], own.similarities.tolist()[:NEAREST_PER_PHOTO]))
        predicted, predicted_sim = brand, brand_sim
        if other_sim is not None and other_sim > brand_sim:
            flags.append("brand_mismatch")
            nearest.append((int(other.ids[0]), other_sim))
            predicted, predicted_sim = self.index.brand_of(int(other.ids[0])), other_sim
        if self.calibration.low_similarity is not None and brand_sim < self.calibration.low_similarity:
            flags.append("low_similarity")
        aligned = verification is not None and verification.aligned
        if verification is not None:
            signals.update(verification.signals)
            if not aligned:
                flags.append("unaligned")
            elif self.calibration.high_block_peak is not None and signals["aligned_block_peak"] > self.calibration.high_block_peak:
                flags.append("local_difference")
        return PhotoEvidence(i, signals, predicted, predicted_sim, sorted(nearest, key=lambda pair: -pair[1]), flags,
                             self.calibration.fuse(signals, aligned=aligned), verification)

    def _signals(self, own: Hits, other_sim: float | None, head_logit: float | None, anomaly: float | None) -> dict[str, float]:
        brand_sim = float(own.similarities[0])
        # With no other brand in the gallery, compare with the calibrated typical best impostor.
        impostor = other_sim if other_sim is not None else self.calibration.default_other_similarity
        signals = {"brand_similarity": brand_sim,
                   "brand_topk_similarity": float(np.mean(own.similarities[: self.calibration.top_k]))}
        if impostor is not None:
            signals.update(other_brand_similarity=impostor, brand_margin=brand_sim - impostor)
        elif OTHER_BRAND_SIGNALS & self.calibration.signals:
            raise InvalidInputError("the gallery holds a single brand and the calibration gives no "
                                    "default_other_similarity to compare with")
        if head_logit is not None:
            signals["head_logit"] = head_logit
        if anomaly is not None:
            signals["patch_anomaly"] = anomaly
        return signals

    # --- explanation ---

    def reasons(self, evidence: list[PhotoEvidence], brand: str | None, verdict: str, *,
                suspicious_threshold: float) -> list[str]:
        """Why the listing got ``verdict`` (``suspicious_threshold``: the one the verdict used)."""
        reasons = []
        scored = [e for e in evidence if e.counterfeit_score is not None]
        for e in scored:
            sim = e.signals["brand_similarity"]
            if "brand_mismatch" in e.flags:
                reasons.append(f"photo {e.index} looks like {e.predicted_brand}, not {brand} "
                               f"(similarity {e.predicted_similarity:.2f} vs {sim:.2f})")
            if "low_similarity" in e.flags:
                reasons.append(f"photo {e.index} is far from every {brand} reference (best similarity {sim:.2f})")
            if "local_mismatch" in e.flags:
                reasons.append(f"photo {e.index}: parts of the closest {brand} references find no match in it "
                               f"(patch anomaly {e.signals['patch_anomaly']:.2f})")
            if "unaligned" in e.flags:
                reasons.append(f"photo {e.index} could not be aligned with the closest {brand} references "
                               f"({e.verification.failure}); its score rests on the embedding signals alone")
            suspicious = e.counterfeit_score >= suspicious_threshold
            localised = e.verification is not None and e.verification.aligned and ("local_difference" in e.flags or suspicious)
            if localised:
                v = e.verification
                reasons.append(f"photo {e.index}: {v.region} differs in {v.difference} from reference {v.reference_id} "
                               f"(block score {v.signals['aligned_block_peak']:.2f} above the photo's median)")
            if "single_brand_gallery" in e.flags:
                reasons.append(f"photo {e.index}: the gallery holds no other brand to compare with, so this check is weaker")
            if not EXPLAINED_FLAGS & set(e.flags) and not localised and suspicious:
                reasons.append(f"photo {e.index} differs from the closest {brand} references (similarity {sim:.2f})")
        if verdict == GENUINE:
            if any(EXPLAINED_FLAGS & set(e.flags) for e in scored):
                # never "matches closely" beside a reason that says otherwise
                reasons.append(f"the listing's score ({self.listing_score(evidence):.2f}) stays below the suspicious "
                               f"threshold ({suspicious_threshold:.2f}), so it is not flagged")
            else:
                best = max(scored, key=lambda e: e.signals["brand_similarity"])
                reasons.append(f"photo {best.index} matches {brand} references closely "
                               f"(similarity {best.signals['brand_similarity']:.2f})")
        return reasons
