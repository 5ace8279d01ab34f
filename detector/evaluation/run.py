"""``cfd evaluate``: build a gallery from every brand's references, score every genuine and
counterfeit photo against its claimed brand, and report detection quality."""

from __future__ import annotations

import csv
import hashlib
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from detector.embedder import Embedder, Embeddings
from detector.errors import InvalidInputError
from detector.evaluation.dataset import Dataset, Sample, load_dataset
from detector.evaluation.metrics import average_precision, confusion, roc_auc, tpr_at_fpr
from detector.evaluation.report import write_markdown, write_plots
from detector.images import load_image
from detector.index import GalleryIndex
from detector.model_folder import LoadedModel
from detector.scoring import gather_evidence, verdict_for


class EmbeddingCache:
    """Embeds each distinct file once (grocery-store reuses photos across products)."""

    def __init__(self, embedder: Embedder, *, show_progress: bool):
        self.embedder = embedder
        self.show_progress = show_progress
        self._by_digest: dict[str, Embeddings] = {}  # one row each
        self._digest_of: dict[Path, str] = {}

    def embed_paths(self, paths: list[Path], *, desc: str) -> None:
        pending: dict[str, Path] = {}
        for path in paths:
            if path in self._digest_of:
                continue
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            self._digest_of[path] = digest
            if digest not in self._by_digest:
                pending[digest] = path
        items = list(pending.items())
        batch = self.embedder.batch_size
        with tqdm(total=len(items), desc=desc, unit="img", disable=not self.show_progress) as bar:
            for start in range(0, len(items), batch):
                chunk = items[start : start + batch]
                images = [load_image(p.read_bytes(), name=str(p)) for _, p in chunk]
                out = self.embedder.embed(images)
                for i, (digest, _) in enumerate(chunk):
                    self._by_digest[digest] = out.rows(i, i + 1)
                bar.update(len(chunk))

    def matrix(self, paths: list[Path]) -> Embeddings:
        rows = [self._by_digest[self._digest_of[p]] for p in paths]
        if not rows:
            return Embeddings(np.zeros((0, self.embedder.embedding_dim), np.float32), None, None)
        return Embeddings(*(None if parts[0] is None else np.concatenate(parts) for parts in zip(*rows)))


def build_index(dataset: Dataset, cache: EmbeddingCache) -> tuple[GalleryIndex, dict[int, np.ndarray]]:
    """A FAISS index over every brand's references, and their patch records by id."""
    index = GalleryIndex(cache.embedder.embedding_dim)
    patches: dict[int, np.ndarray] = {}
    next_id = 1
    for brand in dataset.brands:
        refs = cache.matrix(dataset.references[brand])
        unique: dict[bytes, int] = {}  # identical bytes are one reference
        for row, emb in enumerate(refs.vectors):
            unique.setdefault(emb.tobytes(), row)
        rows = list(unique.values())
        ids = np.arange(next_id, next_id + len(rows), dtype=np.int64)
        index.add(ids, [brand] * len(rows), refs.vectors[rows])
        if refs.patches is not None:
            patches.update({int(i): refs.patches[row] for i, row in zip(ids, rows)})
        next_id += len(rows)
    return index, patches


def score_samples(dataset: Dataset, model: LoadedModel, cache: EmbeddingCache, index: GalleryIndex,
                  patches: dict[int, np.ndarray]) -> list[dict[str, Any]]:
    calibration = model.calibration
    by_brand: dict[str, list[Sample]] = defaultdict(list)
    for sample in dataset.samples:
        by_brand[sample.brand].append(sample)

    def lookup(ids: list[int]) -> dict[int, np.ndarray]:
        return {i: patches[i] for i in ids if i in patches}

    rows = []
    for brand in sorted(by_brand):
        samples = by_brand[brand]
        photos = cache.matrix([s.path for s in samples])
        for sample, evidence in zip(samples, gather_evidence(index, photos, brand, calibration, reference_patches=lookup)):
            rows.append({
                "brand": sample.brand,
                "path": sample.path.relative_to(dataset.root).as_posix(),
                "label": sample.label,
                "kind": sample.kind,
                "severity": sample.severity,
                "split": sample.split,
                "score": evidence.counterfeit_score,
                "verdict": verdict_for(evidence.counterfeit_score, calibration),
                "predicted_brand": evidence.predicted_brand,
                **evidence.signals,
            })
    return rows


def summarise(labels: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    return {
        "n": int(len(labels)),
        "n_counterfeit": int(labels.sum()),
        "n_genuine": int((1 - labels).sum()),
        "roc_auc": roc_auc(labels, scores),
        "average_precision": average_precision(labels, scores),
        "tpr_at_1pct_fpr": tpr_at_fpr(labels, scores, 0.01),
        "tpr_at_5pct_fpr": tpr_at_fpr(labels, scores, 0.05),
    }


def _grouped(rows: list[dict], key: str, *, genuine_shared: bool) -> dict[str, dict[str, Any]]:
    """Metrics per group. For kinds and severities the genuine photos are shared negatives."""
    genuine = [r for r in rows if r["label"] == 0]
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        if r[key] and (r["label"] == 1 or not genuine_shared):
            groups[str(r[key])].append(r)
    out = {}
    for name, members in sorted(groups.items()):
        subset = members + genuine if genuine_shared else members
        labels = np.array([r["label"] for r in subset])
        scores = np.array([r["score"] for r in subset])
        out[name] = summarise(labels, scores)
    return out


def build_report(rows: list[dict], model: LoadedModel, dataset: Dataset) -> dict[str, Any]:
    labels = np.array([r["label"] for r in rows], dtype=np.int64)
    scores = np.array([r["score"] for r in rows], dtype=np.float64)
    report = {
        "dataset": str(dataset.root),
        "model": {"name": model.name, "version": model.version, "path": str(model.path)},
        "brands": len(dataset.brands),
        "references": sum(len(v) for v in dataset.references.values()),
        "thresholds": {
            "suspicious": model.calibration.suspicious_threshold,
            "counterfeit": model.calibration.counterfeit_threshold,
        },
        "overall": summarise(labels, scores),
        "per_kind": _grouped(rows, "kind", genuine_shared=True),
        "per_severity": _grouped(rows, "severity", genuine_shared=True),
        "per_brand": _grouped(rows, "brand", genuine_shared=False),
        "per_split": _grouped(rows, "split", genuine_shared=False),
        "confusion": confusion(labels, [r["verdict"] for r in rows]),
    }
    return report


def evaluate_rows(data: str | Path | Dataset, model: LoadedModel, *, precision: str = "auto",
                  show_progress: bool = True) -> list[dict[str, Any]]:
    """Per-photo signals, scores and verdicts for every listing photo of a dataset."""
    dataset = data if isinstance(data, Dataset) else load_dataset(data)
    cache = EmbeddingCache(model.embedder(precision=precision), show_progress=show_progress)
    cache.embed_paths([p for refs in dataset.references.values() for p in refs], desc="embedding references")
    cache.embed_paths([s.path for s in dataset.samples], desc="embedding listings")
    if not dataset.samples:
        raise InvalidInputError(f"{dataset.root}: no genuine/ or counterfeit/ photos to score")
    return score_samples(dataset, model, cache, *build_index(dataset, cache))


def evaluate(data: str | Path, model: LoadedModel, *, out_dir: str | Path | None = None,
             precision: str = "auto", show_progress: bool = True) -> dict[str, Any]:
    dataset = load_dataset(data)
    rows = evaluate_rows(dataset, model, precision=precision, show_progress=show_progress)
    report = build_report(rows, model, dataset)
    if out_dir is not None:
        write_report(Path(out_dir), report, rows)
    return report


def write_report(out: Path, report: dict[str, Any], rows: list[dict]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    fields = sorted({k for r in rows for k in r}, key=lambda k: (k not in ("brand", "path", "label", "kind"), k))
    with open(out / "samples.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    write_plots(out, rows, report)
    write_markdown(out / "report.md", report)
