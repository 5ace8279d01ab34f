"""Admission control for checks: overload is refused before the work, not after it.

Every image a check carries holds a slot from the moment its request is parsed until its result
is ready (decoding, waiting for the model, the forward pass). A request arriving while every slot
is taken is refused at once, before its body is read; a parsed request that does not fit is
refused before anything is decoded. Used from the event loop only, so it needs no lock.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from detector.errors import OverloadedError


class Admission:
    def __init__(self, capacity: int):
        self.capacity = capacity
        self.in_flight = 0

    def admit(self) -> None:
        if self.in_flight >= self.capacity:
            raise OverloadedError(f"{self.in_flight} images are being checked; try again shortly")

    @contextmanager
    def hold(self, images: int) -> Iterator[None]:
        if self.in_flight + images > self.capacity:
            raise OverloadedError(f"{self.in_flight} images are being checked; try again shortly")
        self.in_flight += images
        try:
            yield
        finally:
            self.in_flight -= images
