"""The index for the best match among every brand but the claimed one: a FAISS index over the
whole gallery (built from ``IndexRecipe.factory``), searched with the claimed brand's ids
filtered out during the scan, its candidates re-scored from ``BrandVectors`` (the full vectors, not the
index's 8-bit PCA codes).

An IVF index removes ids for real (``remove_ids``), so a deleted reference can never come back
and no compaction is needed.
"""

from __future__ import annotations

from collections import OrderedDict

import faiss
import numpy as np

from detector.index.brand_vectors import BrandVectors
from detector.index.recipe import IndexRecipe

_SELECTOR_CACHE = 64  # brands whose id filters are kept (a filter holds about 40 bytes an id)


def training_sample(ids: np.ndarray, recipe: IndexRecipe, *, seed: int = 0) -> np.ndarray:
    """The ids (sorted) an approximate index is trained on."""
    return np.sort(np.random.default_rng(seed).choice(ids, min(len(ids), recipe.train_sample), replace=False))


class OtherBrandIndex:
    def __init__(self, raw: faiss.Index, *, recipe: IndexRecipe, trained_on: int):
        self.raw = raw
        self.recipe = recipe
        self.trained_on = trained_on  # gallery size when the approximate index was trained (0: exact)
        self._ivf = faiss.try_extract_index_ivf(raw)
        self._selectors: OrderedDict[str, tuple] = OrderedDict()

    @classmethod
    def build(cls, vectors: BrandVectors, recipe: IndexRecipe) -> "OtherBrandIndex":
        """A new index over everything in ``vectors``, trained on a sample of them if approximate."""
        ids = vectors.all_ids()
        index = cls.trained(vectors.vectors_of(training_sample(ids, recipe)), count=len(ids), recipe=recipe)
        index.add_from(vectors, ids)
        return index

    @classmethod
    def trained(cls, sample: np.ndarray, *, count: int, recipe: IndexRecipe) -> "OtherBrandIndex":
        """An empty index for a gallery of ``count``, trained on ``sample`` if approximate."""
        raw = faiss.index_factory(sample.shape[1], recipe.factory(count), faiss.METRIC_INNER_PRODUCT)
        if not raw.is_trained:
            raw.train(np.ascontiguousarray(sample, np.float32))
        return cls(raw, recipe=recipe, trained_on=count if recipe.approximate(count) else 0)

    def due_for_training(self, count: int) -> bool:
        """Whether a gallery of ``count`` has outgrown this index: exact where the recipe wants it
        approximate, or approximate and grown ``retrain_growth`` times since training."""
        if not self.approximate:
            return self.recipe.approximate(count)
        return count >= self.recipe.retrain_growth * max(self.trained_on, 1)

    @property
    def approximate(self) -> bool:
        return self._ivf is not None

    def __len__(self) -> int:
        return int(self.raw.ntotal)

    def add_from(self, vectors: BrandVectors, ids: np.ndarray, chunk: int = 65_536) -> None:
        for start in range(0, len(ids), chunk):
            part = np.ascontiguousarray(ids[start : start + chunk], np.int64)
            self.raw.add_with_ids(vectors.vectors_of(part), part)

    def remove(self, ids: np.ndarray) -> None:
        if len(ids):
            self.raw.remove_ids(np.ascontiguousarray(ids, np.int64))

    def forget_brand(self, brand: str) -> None:
        """Drop ``brand``'s cached id filter (its ids changed)."""
        self._selectors.pop(brand, None)

    def search(self, queries: np.ndarray, vectors: BrandVectors, *, excluding: str | None, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Top ``k`` among every brand but ``excluding`` for each query: (similarities descending, ids).
        Approximate candidates are re-scored with their full vectors."""
        fetch = max(k, self.recipe.rerank) if self.approximate else k
        selector = None if excluding is None else self._excluding(excluding, vectors)
        if self.approximate:
            # FAISS splits a batch by query; one query (what a check sends) is split by inverted list,
            # so both cores scan its lists (1M references: p50 2.1 -> 1.3 ms)
            self._ivf.parallel_mode = 1 if len(queries) == 1 else 0
            params = faiss.SearchParametersIVF(sel=selector, nprobe=self.recipe.probes(self._ivf.nlist))
        else:
            params = None if selector is None else faiss.SearchParameters(sel=selector)
        sims, ids = self.raw.search(np.ascontiguousarray(queries, np.float32), fetch, params=params)
        results = []
        for query, row_sims, row_ids in zip(queries, sims, ids):
            keep = row_ids >= 0
            row_sims, row_ids = row_sims[keep], row_ids[keep]
            if self.approximate and len(row_ids):
                row_sims = vectors.similarities(row_ids, query)
                order = np.argsort(-row_sims, kind="stable")[:k]
                row_sims, row_ids = row_sims[order], row_ids[order]
            results.append((row_sims, row_ids))
        return results

    def _excluding(self, brand: str, vectors: BrandVectors):
        cached = self._selectors.get(brand)
        if cached is None:
            batch = faiss.IDSelectorBatch(vectors.brand_ids(brand))
            # IDSelectorNot keeps a raw pointer to ``batch``: hold both so neither is freed.
            cached = (batch, faiss.IDSelectorNot(batch))
            self._selectors[brand] = cached
            while len(self._selectors) > _SELECTOR_CACHE:
                self._selectors.popitem(last=False)
        self._selectors.move_to_end(brand)
        return cached[1]

    def nbytes(self) -> int:
        return int(faiss.serialize_index(self.raw).nbytes)
