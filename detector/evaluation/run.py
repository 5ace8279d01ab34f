"""``cfd evaluate``: build a gallery from every brand's references, score every genuine and
counterfeit photo against its claimed brand, and report detection quality."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from detector.errors import InvalidInputError
from detector.evaluation.cache import EmbeddingCache
from detector.evaluation.dataset import Dataset, Sample, load_dataset
from detector.evaluation.gallery import DatasetGallery
from detector.evaluation.report import write_report
from detector.evaluation.summary import build_report
from detector.model_folder import LoadedModel
from detector.scoring import Scorer


def score_samples(dataset: Dataset, model: LoadedModel, cache: EmbeddingCache, gallery: DatasetGallery) -> list[dict[str, Any]]:
    """One row per listing photo: its labels, signals, score and verdict against its claimed brand."""
    scorer = Scorer(model.calibration, gallery.index, reference_patches=gallery.reference_patches)
    by_brand: dict[str, list[Sample]] = defaultdict(list)
    for sample in dataset.samples:
        by_brand[sample.brand].append(sample)
    rows = []
    for brand in sorted(by_brand):
        samples = by_brand[brand]
        for sample, evidence in zip(samples, scorer.evidence(cache.matrix([s.path for s in samples]), brand)):
            rows.append({
                "brand": sample.brand,
                "path": sample.path.relative_to(dataset.root).as_posix(),
                "label": sample.label,
                "kind": sample.kind,
                "severity": sample.severity,
                "split": sample.split,
                "score": evidence.counterfeit_score,
                "verdict": model.calibration.verdict(evidence.counterfeit_score),
                "predicted_brand": evidence.predicted_brand,
                **evidence.signals,
            })
    return rows


def evaluate_rows(data: str | Path | Dataset, model: LoadedModel) -> list[dict[str, Any]]:
    """Per-photo signals, scores and verdicts for every listing photo of a dataset."""
    dataset = data if isinstance(data, Dataset) else load_dataset(data)
    cache = EmbeddingCache(model.embedder())
    cache.embed_paths([p for refs in dataset.references.values() for p in refs], desc="embedding references")
    cache.embed_paths([s.path for s in dataset.samples], desc="embedding listings")
    if not dataset.samples:
        raise InvalidInputError(f"{dataset.root}: no genuine/ or counterfeit/ photos to score")
    return score_samples(dataset, model, cache, DatasetGallery(dataset, cache))


def evaluate(data: str | Path, model: LoadedModel, *, out_dir: str | Path | None = None) -> dict[str, Any]:
    dataset = load_dataset(data)
    rows = evaluate_rows(dataset, model)
    report = build_report(rows, model, dataset)
    if out_dir is not None:
        write_report(Path(out_dir), report, rows)
    return report
