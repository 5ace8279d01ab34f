"""Thumbnails of stored originals for the console: small JPEGs made once per digest and kept in a
bounded in-memory LRU (an original never changes under its digest, so nothing goes stale)."""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from typing import Callable

from PIL import Image

from detector.images import decode, open_image
from detector.limits import Limits
from detector.pixel_budget import PixelBudget

SIDE = 256
CAPACITY = 2048  # thumbnails kept (about 10-20 KB each)


class Thumbnails:
    def __init__(self, *, limits: Limits, budget: PixelBudget, side: int = SIDE, capacity: int = CAPACITY):
        self.limits = limits
        self.budget = budget  # decoding a thumbnail draws from the process's decoded-pixel budget like a check
        self.side = side
        self.capacity = capacity
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, digest: str, original: Callable[[], bytes]) -> bytes:
        with self._lock:
            if digest in self._cache:
                self._cache.move_to_end(digest)
                return self._cache[digest]
        thumbnail = self._make(original(), name=digest[:12])
        with self._lock:
            self._cache[digest] = thumbnail
            while len(self._cache) > self.capacity:
                self._cache.popitem(last=False)
        return thumbnail

    def _make(self, data: bytes, *, name: str) -> bytes:
        out = io.BytesIO()
        with open_image(data, limits=self.limits, name=name) as image:
            image.draft("RGB", (self.side, self.side))  # JPEG decodes at a fraction of its size
            with self.budget.hold(image.width * image.height):
                picture = decode(image, name=name)
                picture.thumbnail((self.side, self.side), Image.Resampling.BILINEAR)
                picture.save(out, format="JPEG", quality=85)
        return out.getvalue()
