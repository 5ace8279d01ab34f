"""Per-brand calibration: score a brand's genuine evidence as a check would, fit its thresholds.

The evidence, in order of preference:
1. checks of the brand that reviewers decided genuine (a brand's uploaded "genuine examples" are
   such checks), each scored as a listing against the gallery as it is now, from its stored
   embeddings (photos of another model are embedded again from their stored originals);
2. when there are too few, each of the brand's references scored against the others
   (leave-one-out).
A photo is never compared with itself: references with the same bytes are left out of its search.
Decided counterfeit checks, when there are any, say what the new thresholds catch.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from detector import thresholds
from detector.checks import PhotoRecord
from detector.embedder import Embeddings
from detector.errors import DetectorError, InvalidInputError
from detector.index import Hits
from detector.pipeline import Detector

DECISIONS, LEAVE_ONE_OUT = "decisions", "leave-one-out"
MAX_EVIDENCE = 10_000  # the most recent decided checks a fit reads (their embeddings are held at once)


class IndexWithout:
    """The gallery index as if some of one brand's references were not in it."""

    def __init__(self, index, brand: str, excluded: set[int]):
        self._index = index
        self._brand = brand
        self._excluded = np.array(sorted(excluded), dtype=np.int64)

    def brand_size(self, brand: str) -> int:
        return self._index.brand_size(brand) - (len(self._excluded) if brand == self._brand else 0)

    def brand_of(self, ref_id: int) -> str:
        return self._index.brand_of(ref_id)

    def search(self, queries: np.ndarray, k: int) -> list[Hits]:
        return self._index.search(queries, k)  # the best overall match: used only when no brand is claimed

    def search_other_brands(self, queries: np.ndarray, brand: str | None, k: int) -> list[Hits]:
        return self._index.search_other_brands(queries, brand, k)

    def search_brand(self, queries: np.ndarray, brand: str, k: int) -> list[Hits]:
        if brand != self._brand or not len(self._excluded):
            return self._index.search_brand(queries, brand, k)
        out = []
        for hits in self._index.search_brand(queries, brand, k + len(self._excluded)):
            keep = ~np.isin(hits.ids, self._excluded)
            out.append(Hits(hits.similarities[keep][:k], hits.ids[keep][:k]))
        return out


def stored_embeddings(photos: Sequence[PhotoRecord], *, patch_width: int | None) -> Embeddings:
    """A check's photos as the embedder gave them, from their stored rows."""
    logits = [p.logit for p in photos]
    patches = [p.patches for p in photos]
    return Embeddings(
        np.stack([p.embedding for p in photos]).astype(np.float32),
        None if any(v is None for v in logits) else np.array(logits, np.float32),
        None if patch_width is None or any(p is None for p in patches)
        else np.stack([p.reshape(-1, patch_width) for p in patches]))


class BrandCalibrator:
    def __init__(self, detector: Detector):
        self.detector = detector
        self.gallery = detector.gallery
        self.model = self.gallery.model

    def calibrate(self, brand: str, *, actor: str) -> dict[str, Any]:
        """Fit and store the brand's thresholds; -> what was fitted, on what, and what it realises."""
        self.gallery.store.require_brand(brand)
        self.gallery.refresh()
        if self.gallery.index.brand_size(brand) == 0:
            raise InvalidInputError(f"brand {brand} has no references in the index, so its photos cannot be scored")
        genuine = self.decided_scores(brand, "genuine")
        source = DECISIONS
        if len(genuine) < thresholds.MIN_GENUINE:
            source = LEAVE_ONE_OUT
            genuine = self.leave_one_out_scores(brand)
            if len(genuine) < thresholds.MIN_GENUINE:
                raise InvalidInputError(
                    f"brand {brand} has too little genuine evidence to calibrate: fewer than {thresholds.MIN_GENUINE} "
                    "checks decided genuine (or genuine examples) and too few references to leave one out")
        targets = thresholds.targets_of(self.detector.model.calibration)
        fitted, detail = thresholds.fit(np.array(genuine), targets=targets, source=source)
        counterfeit = np.array(self.decided_scores(brand, "counterfeit"))
        if len(counterfeit):
            detail["decided_counterfeit"] = {"n": len(counterfeit), "flagged_tpr": float(np.mean(counterfeit >= fitted.suspicious)),
                                             "counterfeit_tpr": float(np.mean(counterfeit >= fitted.counterfeit))}
        thresholds.save(self.gallery.store, brand, self.model, fitted, detail, actor=actor)
        model = thresholds.model_thresholds(self.detector.model.calibration)
        scores = np.array(genuine)
        return {"brand": brand, "calibration": fitted.info().model_dump(), **detail,
                "model_thresholds": {"suspicious": model.suspicious, "counterfeit": model.counterfeit,
                                     "flagged_fpr": float(np.mean(scores >= model.suspicious)),
                                     "counterfeit_fpr": float(np.mean(scores >= model.counterfeit))}}

    def decided_scores(self, brand: str, decision: str) -> list[float]:
        """Listing scores of the brand's checks whose latest decision is ``decision``."""
        checks = self.gallery.checks
        decided = checks.decided(brand=brand, decision=decision, latest=MAX_EVIDENCE)
        photos = checks.photos([c["id"] for c in decided])
        by_sha: dict[str, set[int]] = {}
        for rid, sha, _ in self.gallery.store.brand_embeddings(brand, model=self.model):
            by_sha.setdefault(sha, set()).add(rid)
        scores = []
        for check in decided:
            records = photos.get(check["id"], [])
            if not records:
                continue
            embeddings = self._embeddings(check["model"], records)
            if embeddings is None:
                continue
            own = set().union(*(by_sha.get(p.sha256, set()) for p in records))
            score = self._score(embeddings, brand, own, [p.sha256 for p in records])
            if score is not None:
                scores.append(score)
        return scores

    def leave_one_out_scores(self, brand: str) -> list[float]:
        if "head_logit" in self.detector.model.calibration.signals:
            raise InvalidInputError(f"brand {brand}: this model's calibration reads its head's logit, which references do "
                                    "not keep, so they cannot be scored left out; decide some of its checks genuine instead")
        references = self.gallery.store.brand_embeddings(brand, model=self.model)
        same_bytes: dict[str, set[int]] = {}
        for rid, sha, _ in references:
            same_bytes.setdefault(sha, set()).add(rid)
        patches = self.gallery.reference_patches([rid for rid, _, _ in references])
        scores = []
        seen: set[str] = set()
        for rid, sha, vector in references:
            if sha in seen:
                continue
            seen.add(sha)
            embeddings = Embeddings(vector[None, :].astype(np.float32), None,
                                    None if rid not in patches else patches[rid][None].astype(np.float16))
            score = self._score(embeddings, brand, same_bytes[sha], [sha])
            if score is not None:
                scores.append(score)
        return scores

    def _embeddings(self, model: str, records: Sequence[PhotoRecord]) -> Embeddings | None:
        if model == self.model:
            return stored_embeddings(records, patch_width=self.gallery.embedder.patch_record_width)
        try:  # another model's check: embed its stored photos again
            decoded = self.gallery.decode_stored([p.sha256 for p in records], views=False)
        except DetectorError:
            return None
        return self.gallery.embedder.embed_tensor(decoded.pixels)

    def _score(self, embeddings: Embeddings, brand: str, excluded: set[int], digests: list[str]) -> float | None:
        scorer = self.detector.scorer(IndexWithout(self.gallery.index, brand, excluded))
        views = None
        if self.detector.model.calibration.aligned is not None:  # its score needs the aligned signals
            views = self.gallery.decode_stored(digests).views
        return scorer.listing_score(scorer.evidence(embeddings, brand, views))
