"""Photos reviewers confirmed counterfeit, matched against new check photos.

A new photo is a known counterfeit when it is a near-duplicate of a confirmed one by both its
embedding (cosine similarity) and its perceptual hash (Hamming distance): the embedding alone
also matches other photos of the same product, the hash alone is fooled by unrelated pictures
with the same coarse layout. The matrix follows ``evidence_version`` (bumped by every decision),
so a decision counts at the next check, in any process on the data directory.
Measured on grocery-store photos (benchmarks/near_duplicates.py): at these limits a resized and
re-encoded copy matches, a photo cropped by 5% on each side mostly does not (the hash moves).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from detector.phash import BITS, hamming
from detector.store import Store

MIN_SIMILARITY = 0.92
MAX_HASH_DISTANCE = 10


@dataclass(frozen=True)
class KnownMatch:
    check_id: int
    photo: int
    similarity: float
    hash_distance: int


class KnownCounterfeits:
    def __init__(self, store: Store, *, model: str, dim: int):
        self.store = store
        self.model = model  # embeddings of other models are not comparable
        self.dim = dim
        self._version = -1
        self._vectors = np.zeros((0, dim), np.float16)
        self._hashes = np.zeros(0, np.uint64)
        self._keys: list[tuple[int, int]] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._keys)

    def refresh(self) -> None:
        version = self.store.evidence_version()
        if version == self._version:
            return
        with self._lock:
            rows = self.store.query(
                "SELECT p.check_id, p.idx, p.phash, p.embedding FROM check_photos p JOIN checks c ON c.id = p.check_id "
                "WHERE c.decision = 'counterfeit' AND c.model = ? ORDER BY p.check_id, p.idx", (self.model,))
            rows = [r for r in rows if len(r[3]) == self.dim * 4]
            self._keys = [(r[0], r[1]) for r in rows]
            self._hashes = np.array([r[2] & ((1 << BITS) - 1) for r in rows], dtype=np.uint64)
            self._vectors = np.stack([np.frombuffer(r[3], np.float32) for r in rows]).astype(np.float16) if rows \
                else np.zeros((0, self.dim), np.float16)
            self._version = version

    def match(self, vectors: np.ndarray, hashes: list[int], *, exclude_check: int | None = None) -> list[KnownMatch | None]:
        """For each photo, the closest confirmed counterfeit it duplicates (None: none); a check
        being re-scored (``exclude_check``) does not match its own photos."""
        self.refresh()
        with self._lock:
            if not self._keys:
                return [None] * len(hashes)
            similarities = np.asarray(vectors, np.float32) @ self._vectors.astype(np.float32).T
            out: list[KnownMatch | None] = []
            for row, photo_hash in zip(similarities, hashes):
                close = [(int(i), hamming(int(self._hashes[i]), photo_hash)) for i in np.flatnonzero(row >= MIN_SIMILARITY)]
                close = [(i, d) for i, d in close if d <= MAX_HASH_DISTANCE and self._keys[i][0] != exclude_check]
                if not close:
                    out.append(None)
                    continue
                best, distance = max(close, key=lambda pair: row[pair[0]])
                check_id, photo = self._keys[best]
                out.append(KnownMatch(check_id, photo, round(float(row[best]), 4), distance))
            return out
