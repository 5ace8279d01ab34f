"""Embeds each distinct file of a dataset once (grocery-store reuses photos across products)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from detector import progress
from detector.embedder import Embedder, Embeddings
from detector.images import load_image


class EmbeddingCache:
    def __init__(self, embedder: Embedder):
        self.embedder = embedder
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
        with progress.bar(total=len(items), desc=desc) as bar:
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
