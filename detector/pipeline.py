"""A listing check from photo bytes to a ``CheckResult``: decode, embed, score, explain, record.

This is the one check path: the CLI embeds with its own embedder, the service passes its
micro-batcher as ``embed``; ``cfd evaluate`` scores its bulk embeddings with the same ``Scorer``,
and a re-score (``detector.rescore``) judges stored embeddings again.
The verdict uses the claimed brand's own thresholds when it has some for this model
(``detector.thresholds``), else the model's; a photo that nearly duplicates one a reviewer
confirmed counterfeit makes the listing counterfeit (``detector.known_counterfeits``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from detector.alignment.features import View
from detector.alignment.verify import Verification
from detector.embedder import Embeddings
from detector.errors import InvalidInputError
from detector.gallery import Decoded, Gallery, UploadFile
from detector.model_folder import LoadedModel
from detector.pixel_budget import PixelAllowance
from detector import thresholds
from detector.checks import Decision, StoredPhoto
from detector.known_counterfeits import KnownCounterfeits, KnownMatch
from detector.results import (COUNTERFEIT, UNVERIFIABLE, AlignmentResult, CheckResult, ImageResult, KnownCounterfeit,
                              ModelInfo, NearestReference)
from detector.scoring import PhotoEvidence, Scorer
from detector.store import LOCAL_ACTOR, Reference, validate_brand_slug, validate_listing_id

EmbedFn = Callable[[torch.Tensor], Embeddings]


@dataclass
class Judged:
    result: CheckResult
    evidence: list[PhotoEvidence]


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
        self.known = KnownCounterfeits(gallery.store, model=gallery.model, dim=gallery.embedder.embedding_dim)

    def check(self, files: Sequence[UploadFile], *, brand: str | None = None, listing_id: str | None = None,
              embed: EmbedFn | None = None, allowance: PixelAllowance | None = None, key_id: str = LOCAL_ACTOR,
              genuine_example: bool = False) -> CheckResult:
        """Check a listing's photos against the brand it claims (else the predicted one) and store the check.

        ``embed`` runs the model on the decoded batch; by default this process's embedder.
        ``allowance``: the request's decoded-pixel budget when several checks share one (a batch).
        ``key_id``: who asked (kept with the check). ``genuine_example``: the photos are a brand's own
        genuine photos, stored already decided genuine (evidence for its thresholds)."""
        if brand is not None:
            validate_brand_slug(brand)
        validate_listing_id(listing_id)
        decoded = self.decode(files, allowance=allowance)
        embeddings = (embed or self.embedder.embed_tensor)(decoded.pixels)
        gallery_version = self.gallery.store.gallery_version()
        judged = self.judge(embeddings, brand=brand, listing_id=listing_id, views=decoded.views, phashes=decoded.phashes)
        photos = [StoredPhoto(f.data, phash, vector, None if embeddings.logits is None else float(embeddings.logits[i]),
                              None if embeddings.patches is None else embeddings.patches[i], e.signals)
                  for i, (f, phash, vector, e) in enumerate(zip(files, decoded.phashes, embeddings.vectors, judged.evidence))]
        self.gallery.checks.record(judged.result, photos, claimed=brand is not None, model=self.gallery.model,
                                   gallery_version=gallery_version, key_id=key_id, source="example" if genuine_example else "check",
                                   decision=Decision("genuine", note="genuine example") if genuine_example else None)
        return judged.result

    def decode(self, files: Sequence[UploadFile], *, allowance: PixelAllowance | None = None) -> Decoded:
        """Validate and decode a listing's photos into one model-ready batch and their alignment views."""
        if not files:
            raise InvalidInputError("a check needs at least one photo")
        limit = self.gallery.limits.max_files_per_check
        if len(files) > limit:
            raise InvalidInputError(f"{len(files)} photos exceeds the limit of {limit} per check")
        return self.gallery.decode(files, allowance=allowance, views=self.align)

    def scorer(self, index=None) -> Scorer:
        """A scorer of the gallery (or of ``index``, a view of it) with this detector's model."""
        return Scorer(self.model.calibration, index or self.gallery.index, reference_patches=self.gallery.reference_patches,
                      reference_features=self.gallery.reference_features if self.align else None,
                      alignment=self.gallery.alignment)

    def thresholds(self, brand: str | None) -> thresholds.Thresholds:
        """The brand's own thresholds for this model, else the model's."""
        return thresholds.stored(self.gallery.store, brand, self.gallery.model) or thresholds.model_thresholds(self.model.calibration)

    def judge(self, embeddings: Embeddings, *, brand: str | None, listing_id: str | None,
              views: Sequence[View] | None = None, phashes: Sequence[int] | None = None,
              check_id: int | None = None) -> Judged:
        """Score embedded photos against the claimed (or else predicted) brand; with ``views``, each
        photo is also verified by alignment with its closest references; with ``phashes``, each is
        matched against the photos reviewers confirmed counterfeit. ``check_id``: the stored check
        being judged again (a re-score)."""
        self.gallery.refresh()  # a gallery changed by another process (a cfd beside the service) counts at once
        scorer = self.scorer()
        reasons: list[str] = []
        claimed = brand
        if claimed is None:
            claimed = scorer.predict_brand(embeddings)
            if claimed is not None:
                reasons.append(f"no brand was claimed; checked against the predicted brand {claimed}")
        evidence = scorer.evidence(embeddings, claimed, views)
        known = self.known.match(embeddings.vectors, list(phashes), exclude_check=check_id) if phashes is not None \
            else [None] * len(evidence)
        score = scorer.listing_score(evidence)
        limits = self.thresholds(claimed) if score is not None else None
        for e, match in zip(evidence, known):
            if match is not None:
                e.flags.append("known_counterfeit")
                reasons.append(f"photo {e.index} nearly duplicates photo {match.photo} of check {match.check_id}, which a "
                               f"reviewer confirmed counterfeit (similarity {match.similarity:.2f})")
        if score is None:
            verdict = COUNTERFEIT if any(known) else UNVERIFIABLE
            reasons.append(self._unverifiable_reason(claimed))
        else:
            verdict = COUNTERFEIT if any(known) else limits.verdict(score)
            reasons.extend(scorer.reasons(evidence, claimed, verdict, suspicious_threshold=limits.suspicious))
        references = self.gallery.references_by_ids(sorted({rid for e in evidence for rid, _ in e.nearest}))
        result = CheckResult(
            check_id=check_id, listing_id=listing_id, brand=claimed, verdict=verdict, counterfeit_score=_round(score),
            model=ModelInfo(name=self.model.name, version=self.model.version),
            calibration=None if limits is None else limits.info(),
            images=[_image_result(e, references, match) for e, match in zip(evidence, known)], reasons=reasons,
        )
        return Judged(result, evidence)

    def _unverifiable_reason(self, claimed: str | None) -> str:
        if claimed is None:
            return "the reference gallery is empty"
        if not self.gallery.store.brand_exists(claimed):
            return f"brand {claimed} is unknown"
        return f"brand {claimed} has no reference photos"


def _image_result(evidence: PhotoEvidence, references: dict[int, Reference], known: KnownMatch | None) -> ImageResult:
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
        known_counterfeit=None if known is None else KnownCounterfeit(check_id=known.check_id, photo=known.photo,
                                                                      similarity=known.similarity, hash_distance=known.hash_distance),
    )


def _alignment_result(v: Verification) -> AlignmentResult:
    return AlignmentResult(aligned=v.aligned, reference_id=v.reference_id, inliers=v.inliers,
                           inlier_ratio=round(v.inlier_ratio, 4), method=v.method, correlation=_round(v.correlation),
                           failure=v.failure, heatmap=v.heatmap,
                           suspicious_box=None if v.box is None else list(v.box), region=v.region, difference=v.difference)


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)
