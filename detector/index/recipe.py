"""How the gallery is searched: the one place where the index's design and parameters are chosen
(by ``benchmarks/index_scale.py``); saved with the index, so a saved index made by another recipe
is rebuilt rather than trusted.

Inside the claimed brand, search is always exhaustive (``BrandVectors``). The best match among all *other* brands comes
from one index over the whole gallery: exact (``IDMap2,Flat``) while the gallery is small, and
from ``approximate_from`` references an IVF index over PCA-reduced, 8-bit-quantised vectors
(about 140 bytes a reference) whose ``rerank`` best candidates are re-scored with the full vectors.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class IndexRecipe:
    approximate_from: int = 10_000  # galleries smaller than this search other brands exactly
    pca_dim: int = 128  # the approximate index's vectors are reduced to this many dimensions ...
    lists_per_sqrt: float = 4.0  # ... and split into about 4·sqrt(N) inverted lists (a power of two)
    min_lists: int = 256
    max_lists: int = 16_384
    probe_fraction: float = 1 / 16  # lists visited per query, and at least min_probes
    min_probes: int = 192
    rerank: int = 64  # approximate candidates re-scored with the full vectors
    train_sample: int = 160_000  # vectors the PCA and the coarse quantiser are trained on (39 a list at 4096 lists)
    retrain_growth: float = 4.0  # retrain (in the background, or at a restart) once the gallery grew this much since training
    max_catch_up: float = 0.25  # a saved index behind by more changes than this share of the gallery is rebuilt

    def approximate(self, count: int) -> bool:
        return count >= self.approximate_from

    def lists(self, count: int) -> int:
        wanted = self.lists_per_sqrt * math.sqrt(max(count, 1))
        return int(min(self.max_lists, max(self.min_lists, 2 ** round(math.log2(wanted)))))

    def probes(self, lists: int) -> int:
        return min(lists, max(self.min_probes, round(lists * self.probe_fraction)))

    def factory(self, count: int) -> str:
        """The FAISS ``index_factory`` string of the other-brand index for a gallery of ``count``."""
        if not self.approximate(count):
            return "IDMap2,Flat"
        return f"PCA{self.pca_dim},IVF{self.lists(count)},SQ8"

    def to_dict(self) -> dict:
        return asdict(self)


DEFAULT_INDEX_RECIPE = IndexRecipe()
