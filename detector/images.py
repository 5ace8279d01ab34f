"""Decode untrusted image bytes into a clean RGB picture, or raise a typed error.

Handles EXIF orientation, palette/alpha/CMYK/16-bit/greyscale modes, animated images (first
frame) and enforces byte and decoded-pixel limits before any pixel is decoded.
"""

from __future__ import annotations

import io
import warnings
from contextlib import contextmanager
from typing import Iterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from detector.errors import DetectorError, ImageTooLargeError, InvalidImageError
from detector.limits import Limits

# Pillow plugin ids; multi-picture JPEGs (MPO) come through the JPEG plugin.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")


def open_image(data: bytes, *, limits: Limits = Limits(), name: str = "image") -> Image.Image:
    """Read only the header of ``data``: format, size and limits are checked before any pixel is decoded.

    Only the allowed formats' plugins ever see the bytes (no exotic decoder is tried)."""
    if len(data) == 0:
        raise InvalidImageError(f"{name}: the file is empty")
    if len(data) > limits.max_file_bytes:
        raise ImageTooLargeError(f"{name}: {len(data)} bytes exceeds the limit of {limits.max_file_bytes} bytes")
    with _decoder_errors(name):
        image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
        width, height = image.size
        if width <= 0 or height <= 0:
            raise InvalidImageError(f"{name}: image has no pixels")
        if width * height > limits.max_pixels:
            raise ImageTooLargeError(f"{name}: {width}x{height} = {width * height} pixels exceeds the limit "
                                     f"of {limits.max_pixels} decoded pixels")
        return image


def decode(image: Image.Image, *, name: str = "image") -> Image.Image:
    """Decode an opened image into 8-bit RGB, upright as the camera saw it (first frame of animations)."""
    with _decoder_errors(name):
        image.seek(0)
        image.load()
        return to_rgb(ImageOps.exif_transpose(image))


def load_image(data: bytes, *, limits: Limits = Limits(), name: str = "image") -> Image.Image:
    """Decode ``data`` into an 8-bit RGB image, upright as the camera saw it."""
    return decode(open_image(data, limits=limits, name=name), name=name)


@contextmanager
def _decoder_errors(name: str) -> Iterator[None]:
    """Whatever a decoder raises on hostile bytes is the client's bad image, never a server error."""
    with warnings.catch_warnings():
        # Pillow only warns below twice its own bomb limit; we decide with our own limit.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            yield
        except DetectorError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageTooLargeError(f"{name}: decompression bomb rejected ({exc})") from None
        except UnidentifiedImageError:
            raise InvalidImageError(f"{name}: not a recognised image file (accepted: {', '.join(ALLOWED_FORMATS)})") from None
        except MemoryError:
            raise ImageTooLargeError(f"{name}: too large to decode") from None
        except Exception as exc:  # OSError, SyntaxError, ValueError, NotImplementedError, struct.error, ...
            raise InvalidImageError(f"{name}: corrupt or truncated image ({type(exc).__name__}: {exc})") from None


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparent areas become white (studio background)."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if mode.startswith("I;16") or array.max() > 255 else 255.0
        array = np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(array, mode="L").convert("RGB")
    if mode == "F":
        array = np.asarray(image, dtype=np.float64)
        scale = 255.0 if array.max() <= 1.0 else 1.0
        return Image.fromarray(np.clip(array * scale, 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode == "P" or mode == "PA":
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "RGB":
        return image
    return image.convert("RGB")


_SIGNATURES = [(b"\xff\xd8", "image/jpeg"), (b"\x89PNG", "image/png"), (b"GIF8", "image/gif"),
               (b"BM", "image/bmp"), (b"II*\x00", "image/tiff"), (b"MM\x00*", "image/tiff")]
SUFFIXES = {"image/jpeg": ".jpg", "image/png": ".png", "image/gif": ".gif", "image/bmp": ".bmp", "image/tiff": ".tif",
            "image/webp": ".webp"}


def media_type(data: bytes) -> str:
    """The image type stored bytes declare by their signature."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return next((mime for magic, mime in _SIGNATURES if data.startswith(magic)), "application/octet-stream")
