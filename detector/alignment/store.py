"""Reference alignment features on disk: ``features/<recipe fingerprint>/ab/<sha256>.npz``
(``detector.derived_files``: recomputed from the original when missing or made by another recipe)."""

from __future__ import annotations

from pathlib import Path

from detector.alignment.features import ReferenceFeatures
from detector.alignment.recipe import AlignmentRecipe
from detector.derived_files import DerivedFiles

FEATURES_DIR = "features"


class FeatureStore(DerivedFiles[ReferenceFeatures]):
    def __init__(self, root: Path, recipe: AlignmentRecipe, *, cache_size: int = 64):
        # up to about 2 MB each at 640 px
        super().__init__(root, recipe.features_fingerprint, suffix=".npz", encode=ReferenceFeatures.to_bytes,
                         decode=ReferenceFeatures.from_bytes, what="alignment features", cache_size=cache_size)
        self.recipe = recipe
