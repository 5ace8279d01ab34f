"""FAISS index of reference embeddings: exact inner-product search, restricted to a brand or to
every brand but one. A cache of SQLite: it can always be rebuilt from the store.

FAISS on CPU must not be searched while it is being modified, so every operation holds a lock.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from detector.fsutil import atomic_write_bytes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hits:
    """Search results for one query: similarities (descending) and reference ids."""

    similarities: np.ndarray
    ids: np.ndarray


class GalleryIndex:
    def __init__(self, dim: int):
        self.dim = dim
        self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self._brand_of: dict[int, str] = {}
        self._ids_by_brand: dict[str, set[int]] = defaultdict(set)
        self._selectors: dict[str, tuple] = {}
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def brand_of(self, ref_id: int) -> str:
        return self._brand_of[int(ref_id)]

    def brand_size(self, brand: str) -> int:
        with self._lock:
            return len(self._ids_by_brand.get(brand, ()))

    def brand_sizes(self) -> dict[str, int]:
        with self._lock:
            return {b: len(ids) for b, ids in self._ids_by_brand.items() if ids}

    def add(self, ids: np.ndarray, brands: list[str], vectors: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        if len(ids) == 0:
            return
        with self._lock:
            self._index.add_with_ids(vectors, ids)
            for ref_id, brand in zip(ids.tolist(), brands):
                self._brand_of[ref_id] = brand
                self._ids_by_brand[brand].add(ref_id)
                self._selectors.pop(brand, None)

    def remove(self, ids: list[int]) -> None:
        with self._lock:
            present = [i for i in ids if i in self._brand_of]
            if not present:
                return
            self._index.remove_ids(np.asarray(present, dtype=np.int64))
            for ref_id in present:
                brand = self._brand_of.pop(ref_id)
                self._ids_by_brand[brand].discard(ref_id)
                self._selectors.pop(brand, None)

    def remove_brand(self, brand: str) -> None:
        with self._lock:
            self.remove(sorted(self._ids_by_brand.get(brand, ())))
            self._ids_by_brand.pop(brand, None)

    def _brand_selectors(self, brand: str) -> tuple:
        cached = self._selectors.get(brand)
        if cached is None:
            batch = faiss.IDSelectorBatch(np.asarray(sorted(self._ids_by_brand.get(brand, ())), dtype=np.int64))
            # IDSelectorNot keeps a raw pointer to ``batch``: hold both so neither is freed.
            cached = (batch, faiss.IDSelectorNot(batch))
            self._selectors[brand] = cached
        return cached

    def _search(self, queries: np.ndarray, k: int, selector=None) -> list[Hits]:
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        if k <= 0 or len(self) == 0:
            empty = Hits(np.zeros(0, np.float32), np.zeros(0, np.int64))
            return [empty for _ in range(len(queries))]
        k = min(k, len(self))
        params = faiss.SearchParameters(sel=selector) if selector is not None else None
        sims, ids = self._index.search(queries, k, params=params)
        results = []
        for row_sims, row_ids in zip(sims, ids):
            keep = row_ids >= 0
            results.append(Hits(row_sims[keep], row_ids[keep]))
        return results

    def search(self, queries: np.ndarray, k: int) -> list[Hits]:
        with self._lock:
            return self._search(queries, k)

    def search_brand(self, queries: np.ndarray, brand: str, k: int) -> list[Hits]:
        with self._lock:
            k = min(k, self.brand_size(brand))
            return self._search(queries, k, self._brand_selectors(brand)[0])

    def search_other_brands(self, queries: np.ndarray, brand: str | None, k: int) -> list[Hits]:
        with self._lock:
            if brand is None or self.brand_size(brand) == 0:
                return self._search(queries, k)
            k = min(k, len(self) - self.brand_size(brand))
            return self._search(queries, k, self._brand_selectors(brand)[1])

    # --- persistence (a cache: a missing or stale file is rebuilt by the caller) ---

    def save(self, path: Path, *, gallery_version: int, model: str) -> None:
        with self._lock:
            data = faiss.serialize_index(self._index).tobytes()
            meta = {"gallery_version": gallery_version, "model": model, "count": len(self), "dim": self.dim,
                    "sha256": hashlib.sha256(data).hexdigest()}
        atomic_write_bytes(Path(path), data)
        atomic_write_bytes(_meta_path(path), json.dumps(meta).encode())

    @classmethod
    def load(cls, path: Path, *, brand_of: dict[int, str], gallery_version: int, model: str, dim: int) -> "GalleryIndex | None":
        """Load a saved index if it matches the store exactly and its bytes are the ones saved, else None
        (the caller rebuilds). Whatever is wrong with a cache file, it only ever means a rebuild."""
        path = Path(path)
        try:
            meta = json.loads(_meta_path(path).read_text())
            if not isinstance(meta, dict):
                return None
            if (meta.get("gallery_version"), meta.get("model"), meta.get("dim")) != (gallery_version, model, dim):
                return None
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() != meta.get("sha256"):
                log.warning("index cache %s does not match its checksum; rebuilding", path)
                return None
            raw = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        except Exception as exc:  # a missing, truncated or foreign file
            log.info("index cache %s not usable (%s); rebuilding", path, exc)
            return None
        if not isinstance(raw, faiss.IndexIDMap2) or raw.d != dim:
            return None
        index = cls(dim)
        index._index = raw
        if set(faiss.vector_to_array(index._index.id_map).tolist()) != set(brand_of):
            return None
        for ref_id, brand in brand_of.items():
            index._brand_of[ref_id] = brand
            index._ids_by_brand[brand].add(ref_id)
        return index


def _meta_path(path: Path) -> Path:
    return Path(path).with_suffix(Path(path).suffix + ".meta.json")
