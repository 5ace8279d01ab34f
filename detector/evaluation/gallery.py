"""An in-memory gallery of a dataset's references: the FAISS index and the patch records by id."""

from __future__ import annotations

import numpy as np

from detector.evaluation.cache import EmbeddingCache
from detector.evaluation.dataset import Dataset
from detector.index import GalleryIndex


class DatasetGallery:
    def __init__(self, dataset: Dataset, cache: EmbeddingCache):
        self.index = GalleryIndex(cache.embedder.embedding_dim)
        self._patches: dict[int, np.ndarray] = {}
        next_id = 1
        for brand in dataset.brands:
            refs = cache.matrix(dataset.references[brand])
            unique: dict[bytes, int] = {}  # identical bytes are one reference
            for row, emb in enumerate(refs.vectors):
                unique.setdefault(emb.tobytes(), row)
            rows = list(unique.values())
            ids = np.arange(next_id, next_id + len(rows), dtype=np.int64)
            self.index.add(ids, [brand] * len(rows), refs.vectors[rows])
            if refs.patches is not None:
                self._patches.update({int(i): refs.patches[row] for i, row in zip(ids, rows)})
            next_id += len(rows)

    def reference_patches(self, ids: list[int]) -> dict[int, np.ndarray]:
        return {i: self._patches[i] for i in ids if i in self._patches}
