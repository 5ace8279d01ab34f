"""Decoded-pixel budgets: what bounds memory whatever the requests carry.

``PixelBudget`` is the process's: the pixels all decodes hold at once. A decode waits for room
(bounded) and is refused as overloaded when none comes. ``PixelAllowance`` is one request's: the
sum of its images' pixels, checked from their headers before any is decoded.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

from detector.errors import ImageTooLargeError, OverloadedError
from detector.memory import return_free_memory

# After a decode this large the freed picture is handed back to the system at once.
_TRIM_AFTER_PIXELS = 4_000_000


class PixelBudget:
    def __init__(self, capacity: int, *, wait_s: float = 10.0):
        self.capacity = capacity
        self.wait_s = wait_s
        self._used = 0
        self._room = threading.Condition()

    @property
    def used(self) -> int:
        return self._used

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        pixels = min(pixels, self.capacity)
        with self._room:
            if not self._room.wait_for(lambda: self._used + pixels <= self.capacity, timeout=self.wait_s):
                raise OverloadedError("too many images are being decoded; try again shortly")
            self._used += pixels
        try:
            yield
        finally:
            with self._room:
                self._used -= pixels
                self._room.notify_all()
            if pixels >= _TRIM_AFTER_PIXELS:
                return_free_memory()


class PixelAllowance:
    """One request's decoded pixels; each listing of a batch draws from the same allowance."""

    def __init__(self, pixels: int):
        self.left = pixels

    def take(self, pixels: int, *, what: str) -> None:
        if pixels > self.left:
            raise ImageTooLargeError(f"{what}: {pixels} decoded pixels exceed what is left of this request's "
                                     f"budget ({self.left}); send fewer or smaller photos")
        self.left -= pixels
