"""The gallery's search index: exhaustive inside the claimed brand (``BrandVectors``, fp16), exhaustive or
approximate among all other brands (``OtherBrandIndex``, by ``IndexRecipe``). A cache of the store:
every vector is loaded from the store at start, and a saved other-brand index is reused
only when it was made by the same recipe for the same gallery version, model and ids.

FAISS on CPU must not be searched while it is being modified, so every operation holds a lock.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np

from detector.fsutil import atomic_write_bytes
from detector.index.brand_vectors import BrandVectors
from detector.index.other_brands import OtherBrandIndex, training_sample
from detector.index.recipe import DEFAULT_INDEX_RECIPE, IndexRecipe

log = logging.getLogger(__name__)


@dataclass
class _Changes:
    added: set[int] = field(default_factory=set)
    removed: set[int] = field(default_factory=set)


@dataclass(frozen=True)
class Hits:
    """Search results for one query: similarities (descending) and reference ids."""

    similarities: np.ndarray
    ids: np.ndarray


class GalleryIndex:
    def __init__(self, dim: int, *, recipe: IndexRecipe = DEFAULT_INDEX_RECIPE):
        self.dim = dim
        self.recipe = recipe
        self.vectors = BrandVectors(dim)
        self.others = OtherBrandIndex.build(self.vectors, recipe)
        self._lock = threading.RLock()
        self._retraining: _Changes | None = None  # what changed since a background training began
        self._retrainer: threading.Thread | None = None

    @classmethod
    def from_vectors(cls, vectors: BrandVectors, *, recipe: IndexRecipe = DEFAULT_INDEX_RECIPE,
                     others: OtherBrandIndex | None = None) -> "GalleryIndex":
        """An index over ``vectors``, with a new other-brand index unless one is given."""
        index = cls(vectors.dim, recipe=recipe)
        index.vectors = vectors
        index.others = others if others is not None else OtherBrandIndex.build(vectors, recipe)
        return index

    def __len__(self) -> int:
        return len(self.vectors)

    @property
    def approximate(self) -> bool:
        return self.others.approximate

    def brand_of(self, ref_id: int) -> str:
        return self.vectors.brand_of(int(ref_id))

    def brand_size(self, brand: str) -> int:
        with self._lock:
            return self.vectors.brand_size(brand)

    def brand_sizes(self) -> dict[str, int]:
        with self._lock:
            return self.vectors.brand_sizes()

    def memory(self) -> dict[str, int]:
        """Bytes held: the exact vectors (with their id maps) and the other-brand index."""
        with self._lock:
            return {"exact_bytes": self.vectors.nbytes(), "other_brand_index_bytes": self.others.nbytes()}

    def add(self, ids: np.ndarray, brands: list[str], vectors: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        if len(ids) == 0:
            return
        with self._lock:
            replaced = self.vectors.remove(ids)
            self.others.remove(replaced)
            self.vectors.add(ids, brands, vectors)
            for brand in set(brands):
                self.others.forget_brand(brand)
            self.others.add_from(self.vectors, ids)
            if self._retraining is not None:
                self._retraining.added.update(ids.tolist())
            elif self.others.due_for_training(len(self.vectors)):
                self._start_retraining()

    def remove(self, ids: list[int]) -> None:
        with self._lock:
            brands = {self.vectors.brand_of(int(i)) for i in ids if int(i) in self.vectors}
            removed = self.vectors.remove(np.asarray(ids, np.int64))
            self.others.remove(removed)
            for brand in brands:
                self.others.forget_brand(brand)
            if self._retraining is not None:
                self._retraining.removed.update(removed.tolist())

    # --- retraining in the background: searches go on with the current index meanwhile ---

    def _start_retraining(self) -> None:
        self._retraining = _Changes()
        log.info("the gallery reached %d references: training a new other-brand index in the background", len(self.vectors))
        self._retrainer = threading.Thread(target=self._retrain, name="index-training", daemon=True)
        self._retrainer.start()

    def _retrain(self, chunk: int = 65_536) -> None:
        """Train on a sample, fill the new index a chunk at a time (the lock is held only to copy
        vectors), then, under the lock, apply what changed meanwhile and swap it in."""
        try:
            with self._lock:
                ids = self.vectors.all_ids()
                sample = self.vectors.vectors_of(training_sample(ids, self.recipe))
            fresh = OtherBrandIndex.trained(sample, count=len(ids), recipe=self.recipe)
            for start in range(0, len(ids), chunk):
                with self._lock:
                    part = np.asarray([i for i in ids[start : start + chunk].tolist() if i in self.vectors], np.int64)
                    rows = self.vectors.vectors_of(part)
                fresh.raw.add_with_ids(rows, part)
            with self._lock:
                changes = self._retraining
                fresh.remove(np.asarray(sorted(changes.removed | changes.added), np.int64))
                fresh.add_from(self.vectors, np.asarray(sorted(i for i in changes.added if i in self.vectors), np.int64))
                self.others = fresh
                log.info("new other-brand index in use (%s, %d references)", self.recipe.factory(fresh.trained_on), len(fresh))
        except Exception:  # a cache: the current index stays in use, and the next change tries again
            log.exception("training a new other-brand index failed")
        finally:
            with self._lock:
                self._retraining = None

    @property
    def training(self) -> bool:
        """Whether a new other-brand index is being trained in the background."""
        return self._retraining is not None

    def wait_for_training(self, timeout: float | None = None) -> None:
        """Block until a background training (if any) has finished."""
        if self._retrainer is not None:
            self._retrainer.join(timeout)

    def remove_brand(self, brand: str) -> None:
        with self._lock:
            self.remove(self.vectors.brand_ids(brand).tolist())

    def search(self, queries: np.ndarray, k: int) -> list[Hits]:
        """The best ``k`` over the whole gallery (used when no brand is claimed)."""
        return self.search_other_brands(queries, None, k)

    def search_brand(self, queries: np.ndarray, brand: str, k: int) -> list[Hits]:
        with self._lock:
            return [Hits(s, i) for s, i in self.vectors.search_brand(_queries(queries, self.dim), brand, k)]

    def search_other_brands(self, queries: np.ndarray, brand: str | None, k: int) -> list[Hits]:
        queries = _queries(queries, self.dim)
        with self._lock:
            if k <= 0 or len(self.vectors) == 0:
                return [Hits(np.zeros(0, np.float32), np.zeros(0, np.int64)) for _ in range(len(queries))]
            excluding = brand if brand is not None and self.vectors.brand_size(brand) else None
            return [Hits(s, i) for s, i in self.others.search(queries, self.vectors, excluding=excluding, k=k)]

    # --- persistence of the other-brand index (a cache: a missing or stale file is rebuilt) ---

    def save(self, path: Path, *, gallery_version: int, model: str) -> None:
        with self._lock:
            data = faiss.serialize_index(self.others.raw).tobytes()
            meta = {"gallery_version": gallery_version, "model": model, "count": len(self), "dim": self.dim,
                    "recipe": self.recipe.to_dict(), "trained_on": self.others.trained_on,
                    "sha256": hashlib.sha256(data).hexdigest()}
        atomic_write_bytes(Path(path), data)
        atomic_write_bytes(_meta_path(path), json.dumps(meta).encode())

    @classmethod
    def restore(cls, path: Path, vectors: BrandVectors, *, gallery_version: int, model: str,
                recipe: IndexRecipe = DEFAULT_INDEX_RECIPE) -> tuple["GalleryIndex", str]:
        """An index over ``vectors`` (loaded from the store) that reuses the saved other-brand index
        when it was made by the same model and recipe, bringing it up to date when references were
        added or removed after it was saved (a crash skips the save at shutdown); else builds a new
        one. Returns the index and what happened ("loaded", "brought up to date ...", "built")."""
        saved, how = _load_other_brands(Path(path), vectors, gallery_version=gallery_version, model=model, recipe=recipe)
        return cls.from_vectors(vectors, recipe=recipe, others=saved), how


def _load_other_brands(path: Path, vectors: BrandVectors, *, gallery_version: int, model: str,
                       recipe: IndexRecipe) -> tuple[OtherBrandIndex | None, str]:
    """The saved other-brand index, brought up to the ids of ``vectors``, if its bytes are the ones
    saved and it was made for them; else (None, "built"). Whatever is wrong with a cache file, it
    only ever means a rebuild."""
    try:
        meta = json.loads(_meta_path(path).read_text())
        if not isinstance(meta, dict):
            return None, "built"
        if (meta.get("model"), meta.get("dim"), meta.get("recipe")) != (model, vectors.dim, recipe.to_dict()):
            return None, "built"
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != meta.get("sha256"):
            log.warning("index cache %s does not match its checksum; rebuilding", path)
            return None, "built"
        raw = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        trained_on, saved_version = int(meta.get("trained_on", 0)), meta.get("gallery_version")
    except Exception as exc:  # a missing, truncated or foreign file
        log.info("index cache %s not usable (%s); rebuilding", path, exc)
        return None, "built"
    index = OtherBrandIndex(raw, recipe=recipe, trained_on=trained_on)
    if raw.d != vectors.dim or index.approximate != recipe.approximate(len(vectors)):
        return None, "built"
    if index.due_for_training(len(vectors)):
        log.info("the gallery grew from %d to %d references since its index was trained: retraining", trained_on, len(vectors))
        return None, "built"
    stored, current = np.sort(_stored_ids(raw)), vectors.all_ids()
    gone, new = np.setdiff1d(stored, current, assume_unique=True), np.setdiff1d(current, stored, assume_unique=True)
    if not len(gone) and not len(new):
        return index, "loaded"
    if saved_version == gallery_version:  # the same version with other ids: not a file this gallery wrote
        return None, "built"
    if len(gone) + len(new) > recipe.max_catch_up * max(len(current), 1):
        return None, "built"
    index.remove(gone)
    index.add_from(vectors, new)
    return index, f"brought up to date (+{len(new)}, -{len(gone)})"


def _stored_ids(raw: faiss.Index) -> np.ndarray:
    ivf = faiss.try_extract_index_ivf(raw)
    if ivf is None:
        return faiss.vector_to_array(faiss.downcast_index(raw).id_map)
    lists = ivf.invlists
    parts = [faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy() for i in range(ivf.nlist) if lists.list_size(i)]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def _queries(queries: np.ndarray, dim: int) -> np.ndarray:
    return np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, dim)


def _meta_path(path: Path) -> Path:
    return Path(path).with_suffix(Path(path).suffix + ".meta.json")
