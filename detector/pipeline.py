"""A listing check from photo bytes to a CheckResult: decode, embed, search, score, explain."""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

import torch

from detector.embedder import Embeddings
from detector.errors import InvalidInputError
from detector.gallery import Gallery, UploadFile
from detector.images import MAX_FILES_PER_CHECK, ImageLimits, load_image
from detector.model_folder import LoadedModel
from detector.scoring import UNVERIFIABLE, gather_evidence, listing_score, reasons_for, verdict_for
from detector.store import validate_brand_slug


class Detector:
    def __init__(self, model: LoadedModel, gallery: Gallery, *, limits: ImageLimits = ImageLimits(),
                 max_files: int = MAX_FILES_PER_CHECK):
        self.model = model
        self.gallery = gallery
        self.embedder = gallery.embedder
        self.limits = limits
        self.max_files = max_files

    def preprocess(self, files: Sequence[UploadFile]) -> torch.Tensor:
        """Validate and decode a listing's photos into one model-ready batch."""
        if not files:
            raise InvalidInputError("a check needs at least one photo")
        if len(files) > self.max_files:
            raise InvalidInputError(f"{len(files)} photos exceeds the limit of {self.max_files} per check")
        images = [load_image(f.data, limits=self.limits, name=f.name) for f in files]
        return self.embedder.preprocess(images)

    def check(self, files: Sequence[UploadFile], *, brand: str | None = None, listing_id: str | None = None) -> dict[str, Any]:
        if brand is not None:
            validate_brand_slug(brand)
        return self.result(self.embedder.embed_tensor(self.preprocess(files)), brand=brand, listing_id=listing_id)

    def result(self, embeddings: Embeddings, *, brand: str | None, listing_id: str | None) -> dict[str, Any]:
        """Score already-embedded photos against the claimed (or else predicted) brand."""
        index = self.gallery.index
        calibration = self.model.calibration
        reasons: list[str] = []
        claimed = brand
        if claimed is None:
            probe = gather_evidence(index, embeddings, None, calibration)
            votes = Counter(e.predicted_brand for e in probe if e.predicted_brand is not None)
            claimed = votes.most_common(1)[0][0] if votes else None
            if claimed is not None:
                reasons.append(f"no brand was claimed; checked against the predicted brand {claimed}")
        evidence = gather_evidence(index, embeddings, claimed, calibration, reference_patches=self.gallery.reference_patches)
        score = listing_score(evidence, calibration)
        if score is None:
            verdict = UNVERIFIABLE
            if claimed is None:
                reasons.append("the reference gallery is empty")
            elif not self.gallery.store.brand_exists(claimed):
                reasons.append(f"brand {claimed} is unknown")
            else:
                reasons.append(f"brand {claimed} has no reference photos")
        else:
            verdict = verdict_for(score, calibration)
            reasons.extend(reasons_for(evidence, claimed, verdict, calibration))
        products = self.gallery.store.references_by_ids(sorted({rid for e in evidence for rid, _ in e.nearest}))
        images = []
        for e in evidence:
            images.append({
                "index": e.index,
                "counterfeit_score": _round(e.counterfeit_score),
                "brand_similarity": _round(e.signals.get("brand_similarity")),
                "predicted_brand": e.predicted_brand,
                "nearest_references": [
                    {"id": rid, "brand": products[rid].brand,
                     "product": products[rid].product, "similarity": _round(sim)}
                    for rid, sim in e.nearest if rid in products
                ],
                "flags": list(e.flags),
            })
        return {
            "listing_id": listing_id,
            "brand": claimed,
            "verdict": verdict,
            "counterfeit_score": _round(score),
            "model": {"name": self.model.name, "version": self.model.version},
            "images": images,
            "reasons": reasons,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)
