"""A generated corpus of every format Pillow can write, with broken variants of each: what a hostile
or careless client may send. (Pillow's own Tests/images ships in no installable package.)"""

from __future__ import annotations

import io
import struct

import numpy as np
from PIL import Image

from detector.images import ALLOWED_FORMATS


def _encode(image: Image.Image, fmt: str) -> bytes | None:
    buffer = io.BytesIO()
    try:
        image.save(buffer, fmt)
    except Exception:  # a writer that needs another mode, a size or a library this machine lacks
        return None
    return buffer.getvalue()


def corpus() -> list[tuple[str, bytes, bool]]:
    """(name, bytes, decodable): every writable format whole, truncated and with a corrupted middle,
    plus a DDS whose pixel format Pillow cannot decode (that raised NotImplementedError)."""
    Image.init()
    rng = np.random.default_rng(0)
    picture = Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    items = []
    for fmt in sorted(Image.SAVE):
        for mode in ("RGB", "L", "1"):
            data = _encode(picture.convert(mode), fmt)
            if data is not None:
                break
        if data is None:
            continue
        items.append((f"{fmt}", data, fmt in ALLOWED_FORMATS or fmt == "MPO"))
        items.append((f"{fmt} truncated", data[: max(1, len(data) // 3)], False))
        broken = bytearray(data)
        middle = len(broken) // 2
        broken[middle : middle + 16] = rng.integers(0, 255, min(16, len(broken) - middle), dtype=np.uint8).tobytes()
        items.append((f"{fmt} corrupted", bytes(broken), None))  # may still decode: only never a crash
    dds = _encode(picture, "DDS")
    if dds is not None:  # pixel-format flags at byte 80 (DDPF_FOURCC), the fourcc at 84
        items.append(("DDS unknown fourcc", dds[:80] + struct.pack("<I", 0x4) + b"ZZZZ" + dds[88:], False))
        items.append(("DDS unknown pixel-format flags", dds[:80] + struct.pack("<I", 0) + dds[84:], False))
    return items
