"""Reference alignment features on disk: ``features/<recipe fingerprint>/ab/<sha256>.npz``.

Derived data, like the FAISS index: written at upload (before the reference's row commits),
read by checks through a small in-memory cache, and recomputed from the original when missing,
unreadable or made by another recipe. Files of other recipes and of deleted references are
removed by the gallery's orphan clean-up.
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
from collections import OrderedDict
from pathlib import Path

from detector.alignment.features import ReferenceFeatures
from detector.alignment.recipe import AlignmentRecipe
from detector.errors import FeatureFormatError
from detector.fsutil import atomic_write_bytes, disk_full_is_typed

log = logging.getLogger(__name__)

FEATURES_DIR = "features"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SUFFIX = ".npz"


class FeatureStore:
    def __init__(self, root: Path, recipe: AlignmentRecipe, *, cache_size: int = 64):
        self.parent = Path(root)
        self.root = self.parent / recipe.features_fingerprint
        self.recipe = recipe
        self._cache: OrderedDict[str, ReferenceFeatures] = OrderedDict()  # up to about 2 MB each at 640 px
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def path(self, digest: str) -> Path:
        if not _SHA256.match(digest):
            raise ValueError(f"not a sha256 digest: {digest!r}")
        return self.root / digest[:2] / (digest + _SUFFIX)

    def get(self, digest: str) -> ReferenceFeatures | None:
        """The stored features of an original, None when missing or unreadable (then recompute them)."""
        with self._lock:
            if digest in self._cache:
                self._cache.move_to_end(digest)
                return self._cache[digest]
        try:
            features = ReferenceFeatures.from_bytes(self.path(digest).read_bytes())
        except FileNotFoundError:
            return None
        except FeatureFormatError as exc:
            log.warning("alignment features of %s are unreadable (%s); recomputing them", digest, exc.message)
            return None
        self._remember(digest, features)
        return features

    def put(self, digest: str, features: ReferenceFeatures) -> None:
        with disk_full_is_typed():
            atomic_write_bytes(self.path(digest), features.to_bytes())
        self._remember(digest, features)

    def _remember(self, digest: str, features: ReferenceFeatures) -> None:
        with self._lock:
            self._cache[digest] = features
            self._cache.move_to_end(digest)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def digests(self) -> set[str]:
        return {p.name[: -len(_SUFFIX)] for p in self.root.glob(f"??/*{_SUFFIX}") if _SHA256.match(p.name[: -len(_SUFFIX)])}

    def delete(self, digest: str) -> None:
        self.path(digest).unlink(missing_ok=True)
        with self._lock:
            self._cache.pop(digest, None)

    def remove_leftovers(self) -> int:
        """Half-written files and other recipes' folders (call only where no writer is active)."""
        leftovers = list(self.root.glob("??/.*.tmp"))
        for path in leftovers:
            path.unlink(missing_ok=True)
        others = [p for p in self.parent.glob("*") if p.is_dir() and p != self.root] if self.parent.is_dir() else []
        for folder in others:
            shutil.rmtree(folder, ignore_errors=True)
        return len(leftovers) + len(others)
