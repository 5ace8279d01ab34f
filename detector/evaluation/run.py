"""``cfd evaluate``: build a gallery from every brand's references, score every genuine and
counterfeit photo against its claimed brand, and report detection quality."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from detector import progress
from detector.alignment.features import photo_view
from detector.errors import InvalidInputError
from detector.evaluation.cache import EmbeddingCache
from detector.evaluation.dataset import Dataset, Sample, load_dataset
from detector.evaluation.gallery import DatasetGallery
from detector.evaluation.report import write_report
from detector.evaluation.summary import build_report
from detector.images import load_image
from detector.model_folder import LoadedModel
from detector.scoring import Scorer

_CHUNK = 16  # photos whose alignment views are held at once


def score_samples(dataset: Dataset, model: LoadedModel, cache: EmbeddingCache, gallery: DatasetGallery, *,
                  align: bool) -> list[dict[str, Any]]:
    """One row per listing photo: its labels, signals, score and verdict against its claimed brand;
    with ``align``, each photo is also verified by alignment (as a check does)."""
    scorer = Scorer(model.calibration, gallery.index, reference_patches=gallery.reference_patches,
                    reference_features=gallery.reference_features if align else None, alignment=gallery.alignment)
    by_brand: dict[str, list[Sample]] = defaultdict(list)
    for sample in dataset.samples:
        by_brand[sample.brand].append(sample)
    chunks = [(brand, by_brand[brand][start : start + _CHUNK]) for brand in sorted(by_brand)
              for start in range(0, len(by_brand[brand]), _CHUNK)]
    rows = []
    with progress.bar(total=len(dataset.samples), desc="aligning and scoring" if align else "scoring") as bar:
        for brand, samples in chunks:
            views = [photo_view(load_image(s.path.read_bytes(), name=str(s.path)), gallery.alignment) for s in samples] \
                if align else None
            rows.extend(_row(dataset, model, gallery, sample, evidence)
                        for sample, evidence in zip(samples, scorer.evidence(cache.matrix([s.path for s in samples]), brand, views)))
            bar.update(len(samples))
    return rows


def _row(dataset: Dataset, model: LoadedModel, gallery: DatasetGallery, sample: Sample, evidence) -> dict[str, Any]:
    verification = evidence.verification
    return {
        "brand": sample.brand,
        "path": sample.path.relative_to(dataset.root).as_posix(),
        "label": sample.label,
        "kind": sample.kind,
        "severity": sample.severity,
        "split": sample.split,
        "score": evidence.counterfeit_score,
        "verdict": model.calibration.verdict(evidence.counterfeit_score),
        "predicted_brand": evidence.predicted_brand,
        "aligned": None if verification is None else verification.aligned,
        # the reference it was compared with (relative path), to look at the pair again
        "aligned_reference": gallery.reference_path(verification.reference_id).relative_to(dataset.root).as_posix()
        if verification is not None and verification.aligned else None,
        **evidence.signals,
    }


def evaluate_rows(data: str | Path | Dataset, model: LoadedModel, *, align: bool | None = None) -> list[dict[str, Any]]:
    """Per-photo signals, scores and verdicts for every listing photo of a dataset. ``align``: verify
    photos by alignment; by default when the model's calibration has an aligned fusion."""
    dataset = data if isinstance(data, Dataset) else load_dataset(data)
    cache = EmbeddingCache(model.embedder())
    cache.embed_paths([p for refs in dataset.references.values() for p in refs], desc="embedding references")
    cache.embed_paths([s.path for s in dataset.samples], desc="embedding listings")
    if not dataset.samples:
        raise InvalidInputError(f"{dataset.root}: no genuine/ or counterfeit/ photos to score")
    align = model.calibration.aligned is not None if align is None else align
    return score_samples(dataset, model, cache, DatasetGallery(dataset, cache), align=align)


def evaluate(data: str | Path, model: LoadedModel, *, out_dir: str | Path | None = None, align: bool | None = None) -> dict[str, Any]:
    dataset = load_dataset(data)
    rows = evaluate_rows(dataset, model, align=align)
    report = build_report(rows, model, dataset)
    if out_dir is not None:
        write_report(Path(out_dir), report, rows)
    return report
