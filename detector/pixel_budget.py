"""Decoded-pixel budgets: what bounds memory whatever the requests carry.

``PixelBudget`` is the process's: the pixels all decodes hold at once. A decode waits for room
(bounded) and is refused as overloaded when none comes. ``PixelAllowance`` is one request's: the
sum of its images' pixels, checked from their headers before any is decoded.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from contextlib import contextmanager
from typing import Iterator

from detector.errors import ImageTooLargeError, OverloadedError

# After a decode this large the process hands freed heap back to the system (glibc keeps it otherwise).
_TRIM_AFTER_PIXELS = 4_000_000


def _malloc_trim() -> None:
    name = ctypes.util.find_library("c")
    try:
        ctypes.CDLL(name).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to hand back this way
        pass


class PixelBudget:
    def __init__(self, capacity: int, *, wait_s: float = 10.0):
        self.capacity = capacity
        self.wait_s = wait_s
        self._used = 0
        self._since_trim = 0
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
                self._since_trim += pixels
                trim = self._used == 0 and self._since_trim >= _TRIM_AFTER_PIXELS
                if trim:
                    self._since_trim = 0
                self._room.notify_all()
            if trim:
                _malloc_trim()


class PixelAllowance:
    """One request's decoded pixels; each listing of a batch draws from the same allowance."""

    def __init__(self, pixels: int):
        self.left = pixels

    def take(self, pixels: int, *, what: str) -> None:
        if pixels > self.left:
            raise ImageTooLargeError(f"{what}: {pixels} decoded pixels exceed what is left of this request's "
                                     f"budget ({self.left}); send fewer or smaller photos")
        self.left -= pixels
