"""Every reference's embedding, grouped by brand: exact (exhaustive) search inside one brand costs
what that brand holds, whatever the gallery's size, and any reference's vector is found by id (to
re-score approximate candidates).

Vectors are held in half precision (a FAISS ``IndexScalarQuantizer`` of ``QT_fp16`` per brand): half
the memory and half the bytes a scan reads, which is what a big brand's scan is bound by (measured
at 1M references: p99 3.3 ms in float32, 1.2-1.7 ms in fp16). Rounding a unit vector to fp16 moves
its inner product with a unit query by at most 2^-11 (about 5e-4; 1.8e-4 the most measured), well
below the 1.3% cosine by which bf16 inference moves embeddings. Scores are accumulated in float32.

A removed row is filled with the brand's last one. Two arrays indexed by reference id give its
brand and row (8 bytes a reference), so lookups never walk Python objects.
"""

from __future__ import annotations

import faiss
import numpy as np

_ABSENT = -1


class _Brand:
    """One brand's vectors (fp16 codes inside FAISS) and their reference ids, row by row."""

    __slots__ = ("index", "ids", "count", "_view")

    def __init__(self, dim: int):
        self.index = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
        self.ids = np.empty(0, np.int64)
        self.count = 0  # index.ntotal, kept in Python: reading it through SWIG showed in search profiles
        self._view: np.ndarray | None = None

    def reserve(self, extra: int) -> None:
        needed = self.count + extra
        if needed > len(self.ids):
            capacity = max(needed, 2 * len(self.ids), 16)
            ids = np.empty(capacity, np.int64)
            ids[: self.count] = self.ids[: self.count]
            self.ids = ids
            # Grow the code buffer's capacity once (a vector keeps its capacity when shrunk back),
            # so a bulk load does not reallocate it at every doubling.
            self._view = None
            self.index.codes.resize(capacity * self.index.code_size)
            self.index.codes.resize(self.count * self.index.code_size)

    def append(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.reserve(len(ids))
        self.ids[self.count : self.count + len(ids)] = ids
        self._view = None
        self.index.add(np.ascontiguousarray(vectors, np.float32))
        self.count += len(ids)

    def matrix(self) -> np.ndarray:
        """The fp16 vectors as a (count, dim) view of FAISS's codes, kept until the next change."""
        if self._view is None:
            if self.count == 0:
                return np.zeros((0, self.index.d), np.float16)
            codes = faiss.rev_swig_ptr(self.index.codes.data(), self.count * self.index.code_size)
            self._view = np.frombuffer(codes, np.uint8).view(np.float16).reshape(self.count, self.index.d)
        return self._view

    def truncate(self, count: int) -> None:
        self._view = None
        self.index.remove_ids(faiss.IDSelectorRange(count, self.count))
        self.count = count

    def nbytes(self) -> int:
        return self.count * self.index.code_size + self.ids.nbytes


class BrandVectors:
    def __init__(self, dim: int):
        self.dim = dim
        self._brands: dict[str, _Brand] = {}
        self._names: list[str] = []  # brand code -> slug
        self._codes: dict[str, int] = {}
        self._code_of = np.full(0, _ABSENT, np.int32)  # reference id -> brand code
        self._row_of = np.full(0, _ABSENT, np.int32)  # reference id -> row in its brand
        self._total = 0

    def __len__(self) -> int:
        return self._total

    def __contains__(self, ref_id: int) -> bool:
        return 0 <= ref_id < len(self._code_of) and self._code_of[ref_id] != _ABSENT

    def brand_of(self, ref_id: int) -> str:
        if ref_id not in self:
            raise KeyError(ref_id)
        return self._names[self._code_of[ref_id]]

    def brand_size(self, brand: str) -> int:
        found = self._brands.get(brand)
        return 0 if found is None else found.count

    def brand_sizes(self) -> dict[str, int]:
        return {name: b.count for name, b in self._brands.items() if b.count}

    def brand_ids(self, brand: str) -> np.ndarray:
        found = self._brands.get(brand)
        return np.zeros(0, np.int64) if found is None else found.ids[: found.count].copy()

    def all_ids(self) -> np.ndarray:
        return np.flatnonzero(self._code_of != _ABSENT).astype(np.int64)

    def nbytes(self) -> int:
        return sum(b.nbytes() for b in self._brands.values()) + self._code_of.nbytes + self._row_of.nbytes

    def reserve(self, counts: dict[str, int], max_id: int) -> None:
        """Room for ``counts`` more references per brand and ids up to ``max_id``: a bulk load then
        fills the arrays once instead of doubling them."""
        for brand, count in counts.items():
            self._brand(brand).reserve(count)
        self._grow_maps(max_id)

    def add(self, ids: np.ndarray, brands: list[str], vectors: np.ndarray) -> None:
        """Add references; an id already present is replaced (so a repeated add is harmless)."""
        if len(ids) == 0:
            return
        self._grow_maps(int(ids.max()))
        self.remove(ids[self._code_of[ids] != _ABSENT])
        order = np.argsort(np.asarray([self._code(b) for b in brands]), kind="stable")
        for brand_ids, brand, rows in _runs(ids, brands, order):
            target = self._brand(brand)
            start = target.count
            target.append(brand_ids, vectors[rows])
            self._code_of[brand_ids] = self._codes[brand]
            self._row_of[brand_ids] = np.arange(start, start + len(brand_ids), dtype=np.int32)
            self._total += len(brand_ids)

    def remove(self, ids: np.ndarray) -> np.ndarray:
        """Remove the given references (absent ones are ignored); returns the ids removed."""
        removed = [int(i) for i in np.asarray(ids, np.int64).tolist() if int(i) in self]
        by_brand: dict[int, list[int]] = {}
        for ref_id in removed:
            by_brand.setdefault(int(self._code_of[ref_id]), []).append(ref_id)
        for code, brand_removed in by_brand.items():
            brand = self._brands[self._names[code]]
            rows, count = brand.matrix(), brand.count
            for ref_id in brand_removed:
                row, last = int(self._row_of[ref_id]), count - 1
                if row != last:  # the brand's last row fills the hole
                    moved = int(brand.ids[last])
                    rows[row] = rows[last]
                    brand.ids[row] = moved
                    self._row_of[moved] = row
                count -= 1
                self._code_of[ref_id] = self._row_of[ref_id] = _ABSENT
            brand.truncate(count)
            self._total -= len(brand_removed)
        return np.asarray(removed, np.int64)

    def vectors_of(self, ids: np.ndarray) -> np.ndarray:
        """The vectors of present ids, in order (float32)."""
        ids = np.asarray(ids, np.int64)
        out = np.empty((len(ids), self.dim), np.float32)
        codes, rows = self._code_of[ids], self._row_of[ids]
        order = np.argsort(codes, kind="stable")
        for group in np.split(order, np.flatnonzero(np.diff(codes[order])) + 1):
            if len(group):
                out[group] = self._brands[self._names[codes[group[0]]]].matrix()[rows[group]]
        return out

    def search_brand(self, queries: np.ndarray, brand: str, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Exhaustive top ``k`` of ``brand`` for each query: (similarities descending, ids).

        FAISS computes it, not numpy: numpy's BLAS keeps threads of its own that spin against FAISS's
        OpenMP threads, which made a single query several times slower."""
        found = self._brands.get(brand)
        if found is None or found.count == 0 or k <= 0:
            return [(np.zeros(0, np.float32), np.zeros(0, np.int64)) for _ in range(len(queries))]
        sims, rows = found.index.search(np.ascontiguousarray(queries, np.float32), min(k, found.count))
        return [(row_sims, found.ids[row]) for row_sims, row in zip(sims, rows)]

    def similarities(self, ids: np.ndarray, query: np.ndarray) -> np.ndarray:
        """Similarity of ``query`` to each present id (element-wise, for the same reason)."""
        return (self.vectors_of(ids) * query).sum(axis=1)

    # --- internals ---

    def _code(self, brand: str) -> int:
        code = self._codes.get(brand)
        if code is None:
            code = self._codes[brand] = len(self._names)
            self._names.append(brand)
        return code

    def _brand(self, brand: str) -> _Brand:
        self._code(brand)
        found = self._brands.get(brand)
        if found is None:
            found = self._brands[brand] = _Brand(self.dim)
        return found

    def _grow_maps(self, max_id: int) -> None:
        if max_id >= len(self._code_of):
            size = max(max_id + 1, 2 * len(self._code_of))
            self._code_of = np.concatenate([self._code_of, np.full(size - len(self._code_of), _ABSENT, np.int32)])
            self._row_of = np.concatenate([self._row_of, np.full(size - len(self._row_of), _ABSENT, np.int32)])


def _runs(ids: np.ndarray, brands: list[str], order: np.ndarray):
    """(ids, brand, source rows) for each brand's run in ``order`` (rows sorted by brand)."""
    start = 0
    while start < len(order):
        brand = brands[order[start]]
        end = start
        while end < len(order) and brands[order[end]] == brand:
            end += 1
        rows = order[start:end]
        yield ids[rows], brand, rows
        start = end
