"""A 64-bit difference hash (dHash) of a photo: near-identical pictures (re-encoded, resized,
lightly retouched) have hashes a few bits apart; different photos of one product do not."""

from __future__ import annotations

import numpy as np
from PIL import Image

BITS = 64


def dhash(picture: Image.Image) -> int:
    """Signed 64-bit (so that SQLite stores it as an INTEGER): each bit says whether a pixel of the
    9 x 8 grey thumbnail is brighter than its right-hand neighbour."""
    grey = np.asarray(picture.convert("L").resize((9, 8), Image.Resampling.BOX), dtype=np.int16)
    bits = (grey[:, 1:] > grey[:, :-1]).ravel()
    value = int("".join("1" if b else "0" for b in bits), 2)
    return value - (1 << BITS) if value >= 1 << (BITS - 1) else value


def hamming(a: int, b: int) -> int:
    return ((a ^ b) & ((1 << BITS) - 1)).bit_count()
