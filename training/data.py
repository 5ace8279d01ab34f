"""Training data: samples from the dataset layout or a CSV manifest, leakage-free splits by brand
and by counterfeit kind, augmentation, and identity-balanced batches."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageEnhance

from detector.errors import InvalidInputError
from detector.evaluation.dataset import Dataset, Sample, load_dataset
from detector.images import load_image
from detector.transforms import EvalTransform


@dataclass(frozen=True)
class Splits:
    train_brands: tuple[str, ...]
    val_brands: tuple[str, ...]
    train_kinds: tuple[str, ...]
    val_kinds: tuple[str, ...]
    holdout_kinds: tuple[str, ...]


def load_training_dataset(root: str | Path, manifest: str | Path | None = None) -> Dataset:
    """The dataset layout, or a CSV manifest with ``path,brand,kind`` (kind: reference, genuine, or a counterfeit kind)."""
    if manifest is None:
        return load_dataset(root)
    root = Path(root)
    references: dict[str, list[Path]] = {}
    samples: list[Sample] = []
    try:
        rows = list(csv.DictReader(open(manifest, newline="")))
    except OSError as exc:
        raise InvalidInputError(f"cannot read manifest {manifest}: {exc.strerror}") from None
    for row in rows:
        try:
            path, brand, kind = root / row["path"], row["brand"], row["kind"]
        except KeyError as exc:
            raise InvalidInputError(f"{manifest}: missing column {exc}") from None
        if kind == "reference":
            references.setdefault(brand, []).append(path)
        else:
            samples.append(Sample(brand, path, 0 if kind == "genuine" else 1, kind, row.get("severity", ""), row.get("split", "")))
    return Dataset(root, references, samples)


def make_splits(dataset: Dataset, *, seed: int, val_brand_fraction: float, val_kinds: list[str],
                holdout_kinds: list[str]) -> Splits:
    brands = sorted(dataset.references)
    order = np.random.default_rng([seed, 17]).permutation(len(brands))
    n_val = max(1, int(round(val_brand_fraction * len(brands))))
    if n_val >= len(brands):
        raise InvalidInputError(f"{len(brands)} brands cannot be split into train and validation")
    val = tuple(sorted(brands[i] for i in order[:n_val]))
    train = tuple(sorted(brands[i] for i in order[n_val:]))
    kinds = sorted({s.kind for s in dataset.samples if s.label == 1})
    overlap = set(val_kinds) & set(holdout_kinds)
    if overlap:
        raise InvalidInputError(f"kinds {sorted(overlap)} are both validation and hold-out kinds")
    train_kinds = tuple(k for k in kinds if k not in set(val_kinds) | set(holdout_kinds))
    if not train_kinds:
        raise InvalidInputError("no counterfeit kind is left for training")
    return Splits(train, val, train_kinds, tuple(k for k in val_kinds if k in kinds), tuple(k for k in holdout_kinds if k in kinds))


def subset(dataset: Dataset, brands: tuple[str, ...], kinds: tuple[str, ...]) -> Dataset:
    """References and genuine photos of ``brands``, and their counterfeits of ``kinds``."""
    keep = set(brands)
    return Dataset(dataset.root, {b: p for b, p in dataset.references.items() if b in keep},
                   [s for s in dataset.samples if s.brand in keep and (s.label == 0 or s.kind in kinds)])


@dataclass(frozen=True)
class Item:
    path: Path
    label: int  # 1 counterfeit
    identity: int  # brand index for genuine items; -1 for counterfeits (negatives only)
    reference: bool = False


@dataclass(frozen=True)
class Batch:
    pixels: torch.Tensor  # (N, 3, H, W) augmented listing photos and references
    labels: torch.Tensor  # (N,) 1 counterfeit
    identities: torch.Tensor  # (N,) brand index, -1 for counterfeits
    brands: torch.Tensor  # (N,) brand index of every item, counterfeits included
    is_reference: torch.Tensor  # (N,) bool
    reference_pixels: torch.Tensor  # (R, 3, H, W) the chosen brands' references as the gallery sees them
    reference_brands: torch.Tensor  # (R,)


def training_items(dataset: Dataset, splits: Splits) -> dict[str, tuple[list[Item], list[Item]]]:
    """Per train brand: (genuine items incl. references, counterfeit items of train kinds)."""
    items = {}
    for i, brand in enumerate(splits.train_brands):
        genuine = [Item(p, 0, i, reference=True) for p in dataset.references[brand]]
        genuine += [Item(s.path, 0, i) for s in dataset.samples if s.brand == brand and s.label == 0]
        fakes = [Item(s.path, 1, -1) for s in dataset.samples if s.brand == brand and s.label == 1 and s.kind in splits.train_kinds]
        items[brand] = (genuine, fakes)
    return items


def augment(image: Image.Image, rng: np.random.Generator, size: int) -> Image.Image:
    """Geometry and light only: no flips (mirrored text) and no hue changes (colour is evidence)."""
    w, h = image.size
    scale = rng.uniform(0.7, 1.0)
    cw, ch = int(w * np.sqrt(scale)), int(h * np.sqrt(scale))
    left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    image = image.crop((left, top, left + cw, top + ch)).rotate(rng.uniform(-10, 10), resample=Image.Resampling.BILINEAR)
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.85, 1.15))
    image = ImageEnhance.Contrast(image).enhance(rng.uniform(0.85, 1.15))
    return image.resize((size, size), Image.Resampling.BICUBIC)


class BatchMaker:
    """Identity-balanced batches: B brands x (G genuine + C counterfeits), reproducible per step."""

    def __init__(self, items: dict[str, tuple[list[Item], list[Item]]], transform: EvalTransform, *, seed: int,
                 batch_brands: int, genuine_per_brand: int, counterfeits_per_brand: int, references_per_brand: int = 0):
        self.items = items
        self.brands = sorted(items)
        self.transform = transform
        self.seed = seed
        self.batch_brands = min(batch_brands, len(self.brands))
        self.genuine = genuine_per_brand
        self.fakes = counterfeits_per_brand
        self.references = references_per_brand
        self._cache: dict[Path, Image.Image] = {}

    def _image(self, path: Path) -> Image.Image:
        if path not in self._cache:
            self._cache[path] = load_image(path.read_bytes(), name=str(path))
        return self._cache[path]

    def batch(self, step: int, rank: int = 0) -> Batch:
        rng = np.random.default_rng([self.seed, rank, step])
        chosen: list[tuple[int, Item]] = []
        gallery: list[tuple[int, Item]] = []
        for b in rng.choice(len(self.brands), self.batch_brands, replace=False):
            genuine, fakes = self.items[self.brands[b]]
            chosen += [(b, genuine[i]) for i in rng.choice(len(genuine), min(self.genuine, len(genuine)), replace=False)]
            if fakes:
                chosen += [(b, fakes[i]) for i in rng.choice(len(fakes), min(self.fakes, len(fakes)), replace=False)]
            references = [it for it in genuine if it.reference]
            picked = rng.choice(len(references), min(self.references, len(references)), replace=False)
            gallery += [(b, references[i]) for i in sorted(picked)]
        size = self.transform.input_size
        pixels = torch.stack([self.transform(augment(self._image(it.path), rng, size)) for _, it in chosen])
        reference_pixels = (torch.stack([self.transform(self._image(it.path)) for _, it in gallery]) if gallery
                            else torch.zeros((0, *pixels.shape[1:])))
        return Batch(
            pixels=pixels,
            labels=torch.tensor([it.label for _, it in chosen], dtype=torch.float32),
            identities=torch.tensor([it.identity for _, it in chosen], dtype=torch.int64),
            brands=torch.tensor([b for b, _ in chosen], dtype=torch.int64),
            is_reference=torch.tensor([it.reference for _, it in chosen], dtype=torch.bool),
            reference_pixels=reference_pixels,
            reference_brands=torch.tensor([b for b, _ in gallery], dtype=torch.int64),
        )
