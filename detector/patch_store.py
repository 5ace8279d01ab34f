"""Reference patch records on disk, one file per original and model:
``patches/<model>/ab/<sha256>.f16`` (float16, ``(P, record width)``).

A check reads the records of a few references by id; kept out of the database row (about 50 KB a
reference), they cost nothing to a scan of the gallery and only what is read to a check. Derived
data (``detector.derived_files``): recomputed from the original when missing or unreadable.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from detector.derived_files import DerivedFiles

PATCHES_DIR = "patches"


class PatchStore(DerivedFiles[np.ndarray]):
    def __init__(self, root: Path, model_fingerprint: str, record_width: int, *, cache_size: int = 256):
        self.record_width = record_width
        super().__init__(root, hashlib.sha256(model_fingerprint.encode()).hexdigest()[:16], suffix=".f16",
                         encode=lambda records: np.ascontiguousarray(records, np.float16).tobytes(),
                         decode=self._decode, what="patch records", cache_size=cache_size)

    def _decode(self, data: bytes) -> np.ndarray:
        if not data or len(data) % (2 * self.record_width):
            raise ValueError(f"{len(data)} bytes are not whole records of width {self.record_width}")
        return np.frombuffer(data, np.float16).reshape(-1, self.record_width)
