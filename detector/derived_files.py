"""Data derived from stored originals, one file per original: ``<parent>/<fingerprint>/ab/<sha256><suffix>``.

Like the FAISS index, a cache of what can be computed again: written at upload (before the
reference's row commits), read by id through a small in-memory cache, and recomputed from the
original when missing, unreadable or made by another recipe or model (another ``fingerprint``).
Files of other fingerprints and of deleted references are removed by the gallery's orphan clean-up.
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Generic, TypeVar

from detector.errors import DetectorError
from detector.fsutil import atomic_write_bytes, disk_full_is_typed

log = logging.getLogger(__name__)

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
T = TypeVar("T")


class DerivedFiles(Generic[T]):
    def __init__(self, parent: Path, fingerprint: str, *, suffix: str, encode: Callable[[T], bytes],
                 decode: Callable[[bytes], T], what: str, cache_size: int = 64):
        self.parent = Path(parent)
        self.root = self.parent / fingerprint
        self.suffix = suffix
        self.what = what
        self._encode, self._decode = encode, decode
        self._cache: OrderedDict[str, T] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def path(self, digest: str) -> Path:
        if not _SHA256.match(digest):
            raise ValueError(f"not a sha256 digest: {digest!r}")
        return self.root / digest[:2] / (digest + self.suffix)

    def get(self, digest: str) -> T | None:
        """The stored value for an original, None when missing or unreadable (then recompute it)."""
        with self._lock:
            if digest in self._cache:
                self._cache.move_to_end(digest)
                return self._cache[digest]
        try:
            value = self._decode(self.path(digest).read_bytes())
        except FileNotFoundError:
            return None
        except (DetectorError, ValueError) as exc:
            log.warning("%s of %s are unreadable (%s); recomputing them", self.what, digest, getattr(exc, "message", exc))
            return None
        self._remember(digest, value)
        return value

    def put(self, digest: str, value: T) -> None:
        with disk_full_is_typed():
            atomic_write_bytes(self.path(digest), self._encode(value))
        self._remember(digest, value)

    def _remember(self, digest: str, value: T) -> None:
        with self._lock:
            self._cache[digest] = value
            self._cache.move_to_end(digest)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def digests(self) -> set[str]:
        n = len(self.suffix)
        return {p.name[:-n] for p in self.root.glob(f"??/*{self.suffix}") if _SHA256.match(p.name[:-n])}

    def delete(self, digest: str) -> None:
        self.path(digest).unlink(missing_ok=True)
        with self._lock:
            self._cache.pop(digest, None)

    def remove_leftovers(self) -> int:
        """Half-written files and other fingerprints' folders (call only where no writer is active)."""
        leftovers = list(self.root.glob("??/.*.tmp"))
        for path in leftovers:
            path.unlink(missing_ok=True)
        others = [p for p in self.parent.glob("*") if p.is_dir() and p != self.root] if self.parent.is_dir() else []
        for folder in others:
            shutil.rmtree(folder, ignore_errors=True)
        return len(leftovers) + len(others)
