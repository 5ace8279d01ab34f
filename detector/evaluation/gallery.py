"""An in-memory gallery of a dataset's references: the FAISS index, the patch records and the
alignment features (computed on first use) by id."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from detector.alignment.features import ReferenceFeatures, photo_view, reference_features
from detector.alignment.recipe import DEFAULT_RECIPE, AlignmentRecipe
from detector.evaluation.cache import EmbeddingCache
from detector.evaluation.dataset import Dataset
from detector.images import load_image
from detector.index import GalleryIndex


class DatasetGallery:
    def __init__(self, dataset: Dataset, cache: EmbeddingCache, *, alignment: AlignmentRecipe = DEFAULT_RECIPE):
        self.index = GalleryIndex(cache.embedder.embedding_dim)
        self.alignment = alignment
        self._patches: dict[int, np.ndarray] = {}
        self._paths: dict[int, Path] = {}
        self._features: dict[int, ReferenceFeatures] = {}
        next_id = 1
        for brand in dataset.brands:
            refs = cache.matrix(dataset.references[brand])
            unique: dict[bytes, int] = {}  # identical bytes are one reference
            for row, emb in enumerate(refs.vectors):
                unique.setdefault(emb.tobytes(), row)
            rows = list(unique.values())
            ids = np.arange(next_id, next_id + len(rows), dtype=np.int64)
            self.index.add(ids, [brand] * len(rows), refs.vectors[rows])
            self._paths.update({int(i): dataset.references[brand][row] for i, row in zip(ids, rows)})
            if refs.patches is not None:
                self._patches.update({int(i): refs.patches[row] for i, row in zip(ids, rows)})
            next_id += len(rows)
        self.index.wait_for_training()  # every evaluation searches the same index, whatever the timing

    def reference_patches(self, ids: list[int]) -> dict[int, np.ndarray]:
        return {i: self._patches[i] for i in ids if i in self._patches}

    def reference_path(self, ref_id: int) -> Path:
        return self._paths[ref_id]

    def reference_features(self, ids: list[int]) -> dict[int, ReferenceFeatures]:
        for i in ids:
            if i not in self._features and i in self._paths:
                picture = load_image(self._paths[i].read_bytes(), name=str(self._paths[i]))
                self._features[i] = reference_features(photo_view(picture, self.alignment), self.alignment)
        return {i: self._features[i] for i in ids if i in self._features}
