"""Every reference's exact embedding, grouped by brand: exact search inside one brand costs what
that brand holds, whatever the gallery's size, and any reference's vector is found by id (to
re-score approximate candidates).

Each brand's vectors sit in one contiguous array that grows by doubling; a removed row is filled
with the brand's last one. Two arrays indexed by reference id give its brand and row (8 bytes a
reference), so lookups never walk Python objects.
"""

from __future__ import annotations

import faiss
import numpy as np

_ABSENT = -1


class _Brand:
    __slots__ = ("vectors", "ids", "count")

    def __init__(self, dim: int, capacity: int):
        self.vectors = np.empty((capacity, dim), np.float32)
        self.ids = np.empty(capacity, np.int64)
        self.count = 0

    def reserve(self, extra: int) -> None:
        needed = self.count + extra
        if needed > len(self.ids):
            capacity = max(needed, 2 * len(self.ids), 16)
            vectors = np.empty((capacity, self.vectors.shape[1]), np.float32)
            vectors[: self.count] = self.vectors[: self.count]
            ids = np.empty(capacity, np.int64)
            ids[: self.count] = self.ids[: self.count]
            self.vectors, self.ids = vectors, ids

    def nbytes(self) -> int:
        return self.vectors.nbytes + self.ids.nbytes


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
            target.reserve(len(brand_ids))
            start = target.count
            target.vectors[start : start + len(brand_ids)] = vectors[rows]
            target.ids[start : start + len(brand_ids)] = brand_ids
            target.count += len(brand_ids)
            self._code_of[brand_ids] = self._codes[brand]
            self._row_of[brand_ids] = np.arange(start, start + len(brand_ids), dtype=np.int32)
            self._total += len(brand_ids)

    def remove(self, ids: np.ndarray) -> np.ndarray:
        """Remove the given references (absent ones are ignored); returns the ids removed."""
        removed = [int(i) for i in np.asarray(ids, np.int64).tolist() if int(i) in self]
        for ref_id in removed:
            brand = self._brands[self._names[self._code_of[ref_id]]]
            row, last = int(self._row_of[ref_id]), brand.count - 1
            if row != last:  # the brand's last row fills the hole
                moved = int(brand.ids[last])
                brand.vectors[row] = brand.vectors[last]
                brand.ids[row] = moved
                self._row_of[moved] = row
            brand.count -= 1
            self._code_of[ref_id] = self._row_of[ref_id] = _ABSENT
            self._total -= 1
        return np.asarray(removed, np.int64)

    def vectors_of(self, ids: np.ndarray) -> np.ndarray:
        """The exact vectors of present ids, in order."""
        out = np.empty((len(ids), self.dim), np.float32)
        for i, ref_id in enumerate(np.asarray(ids).tolist()):
            out[i] = self._brands[self._names[self._code_of[ref_id]]].vectors[self._row_of[ref_id]]
        return out

    def search_brand(self, queries: np.ndarray, brand: str, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Exact top ``k`` of ``brand`` for each query: (similarities descending, ids).

        FAISS computes it, not numpy: numpy's BLAS keeps threads of its own that spin against FAISS's
        OpenMP threads, which made a single query several times slower."""
        found = self._brands.get(brand)
        if found is None or found.count == 0 or k <= 0:
            return [(np.zeros(0, np.float32), np.zeros(0, np.int64)) for _ in range(len(queries))]
        sims, rows = faiss.knn(queries, found.vectors[: found.count], min(k, found.count), metric=faiss.METRIC_INNER_PRODUCT)
        return [(row_sims, found.ids[row]) for row_sims, row in zip(sims, rows)]

    def similarities(self, ids: np.ndarray, query: np.ndarray) -> np.ndarray:
        """Exact similarity of ``query`` to each present id (element-wise, for the same reason)."""
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
            found = self._brands[brand] = _Brand(self.dim, 0)
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
