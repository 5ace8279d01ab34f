"""A listing check from photo bytes to a ``CheckResult``: decode, embed, score, explain.

This is the one check path: the CLI embeds with its own embedder, the service passes its
micro-batcher as ``embed``; ``cfd evaluate`` scores its bulk embeddings with the same ``Scorer``.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from detector.alignment.features import View
from detector.alignment.verify import Verification
from detector.embedder import Embeddings
from detector.errors import InvalidInputError
from detector.gallery import Decoded, Gallery, UploadFile
from detector.model_folder import LoadedModel
from detector.pixel_budget import PixelAllowance
from detector.results import UNVERIFIABLE, AlignmentResult, CheckResult, ImageResult, ModelInfo, NearestReference
from detector.scoring import PhotoEvidence, Scorer
from detector.store import Reference, validate_brand_slug, validate_listing_id

EmbedFn = Callable[[torch.Tensor], Embeddings]


class Detector:
    """``align=False`` skips aligned verification (a check then costs its embedding alone); a model
    whose calibration has an aligned fusion needs it."""

    def __init__(self, model: LoadedModel, gallery: Gallery, *, align: bool = True):
        if not align and model.calibration.aligned is not None:
            raise InvalidInputError(f"model {model.name} {model.version} scores aligned photos with its own fusion: "
                                    "alignment cannot be turned off for it")
        self.model = model
        self.gallery = gallery
        self.embedder = gallery.embedder
        self.align = align

    def check(self, files: Sequence[UploadFile], *, brand: str | None = None, listing_id: str | None = None,
              embed: EmbedFn | None = None, allowance: PixelAllowance | None = None) -> CheckResult:
        """Check a listing's photos against the brand it claims (else the predicted one).

        ``embed`` runs the model on the decoded batch; by default this process's embedder.
        ``allowance``: the request's decoded-pixel budget when several checks share one (a batch)."""
        if brand is not None:
            validate_brand_slug(brand)
        validate_listing_id(listing_id)
        decoded = self.decode(files, allowance=allowance)
        embeddings = (embed or self.embedder.embed_tensor)(decoded.pixels)
        return self.judge(embeddings, brand=brand, listing_id=listing_id, views=decoded.views)

    def decode(self, files: Sequence[UploadFile], *, allowance: PixelAllowance | None = None) -> Decoded:
        """Validate and decode a listing's photos into one model-ready batch and their alignment views."""
        if not files:
            raise InvalidInputError("a check needs at least one photo")
        limit = self.gallery.limits.max_files_per_check
        if len(files) > limit:
            raise InvalidInputError(f"{len(files)} photos exceeds the limit of {limit} per check")
        return self.gallery.decode(files, allowance=allowance, views=self.align)

    def judge(self, embeddings: Embeddings, *, brand: str | None, listing_id: str | None,
              views: Sequence[View] | None = None) -> CheckResult:
        """Score embedded photos against the claimed (or else predicted) brand; with ``views``, each
        photo is also verified by alignment with its closest references."""
        self.gallery.refresh()  # a gallery changed by another process (a cfd beside the service) counts at once
        scorer = Scorer(self.model.calibration, self.gallery.index, reference_patches=self.gallery.reference_patches,
                        reference_features=self.gallery.reference_features if self.align else None,
                        alignment=self.gallery.alignment)
        reasons: list[str] = []
        claimed = brand
        if claimed is None:
            claimed = scorer.predict_brand(embeddings)
            if claimed is not None:
                reasons.append(f"no brand was claimed; checked against the predicted brand {claimed}")
        evidence = scorer.evidence(embeddings, claimed, views)
        score = scorer.listing_score(evidence)
        if score is None:
            verdict = UNVERIFIABLE
            reasons.append(self._unverifiable_reason(claimed))
        else:
            verdict = self.model.calibration.verdict(score)
            reasons.extend(scorer.reasons(evidence, claimed, verdict))
        references = self.gallery.references_by_ids(sorted({rid for e in evidence for rid, _ in e.nearest}))
        return CheckResult(
            listing_id=listing_id, brand=claimed, verdict=verdict, counterfeit_score=_round(score),
            model=ModelInfo(name=self.model.name, version=self.model.version),
            images=[_image_result(e, references) for e in evidence], reasons=reasons,
        )

    def _unverifiable_reason(self, claimed: str | None) -> str:
        if claimed is None:
            return "the reference gallery is empty"
        if not self.gallery.store.brand_exists(claimed):
            return f"brand {claimed} is unknown"
        return f"brand {claimed} has no reference photos"


def _image_result(evidence: PhotoEvidence, references: dict[int, Reference]) -> ImageResult:
    return ImageResult(
        index=evidence.index,
        counterfeit_score=_round(evidence.counterfeit_score),
        brand_similarity=_round(evidence.signals.get("brand_similarity")),
        predicted_brand=evidence.predicted_brand,
        nearest_references=[
            NearestReference(id=rid, brand=references[rid].brand, product=references[rid].product, similarity=_round(sim))
            for rid, sim in evidence.nearest if rid in references
        ],
        flags=list(evidence.flags),
        alignment=None if evidence.verification is None else _alignment_result(evidence.verification),
    )


def _alignment_result(v: Verification) -> AlignmentResult:
    return AlignmentResult(aligned=v.aligned, reference_id=v.reference_id, inliers=v.inliers,
                           inlier_ratio=round(v.inlier_ratio, 4), failure=v.failure, heatmap=v.heatmap,
                           suspicious_box=None if v.box is None else list(v.box), region=v.region, difference=v.difference)


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)
