from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from detector.errors import ImageTooLargeError, InvalidImageError
from detector.images import load_image
from detector.limits import Limits
from tests.image_corpus import corpus
from tests.synthetic import encode, product_image


def _rgb_array(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int32)


def test_plain_png_and_jpeg_decode_to_rgb():
    source = product_image("acme", 1)
    for fmt in ("PNG", "JPEG", "WEBP", "BMP", "TIFF"):
        image = load_image(encode(source, fmt))
        assert image.mode == "RGB" and image.size == source.size, fmt


def test_exif_orientation_is_applied():
    source = Image.new("RGB", (40, 20), (255, 0, 0))
    source.paste((0, 0, 255), (0, 0, 10, 20))  # blue on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    image = load_image(encode(source, "JPEG", exif=exif.tobytes(), quality=95))
    assert image.size == (20, 40)
    top = np.asarray(image)[2, 10]
    assert top[2] > 150 and top[0] < 100  # the blue strip ends up on top


def test_palette_with_transparency_becomes_white_background():
    image = Image.new("P", (10, 10))
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.info["transparency"] = 0
    decoded = load_image(encode(image, "PNG"))
    assert decoded.mode == "RGB"
    assert tuple(np.asarray(decoded)[0, 0]) == (255, 255, 255)


def test_rgba_alpha_composited_on_white():
    image = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    image.putpixel((0, 0), (0, 0, 255, 255))
    decoded = _rgb_array(load_image(encode(image, "PNG")))
    assert tuple(decoded[0, 0]) == (0, 0, 255)
    assert tuple(decoded[4, 4]) == (255, 255, 255)


def test_cmyk_jpeg_converts():
    image = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # red in CMYK
    decoded = _rgb_array(load_image(encode(image, "JPEG")))
    assert decoded[8, 8, 0] > 200 and decoded[8, 8, 1] < 60


def test_16bit_greyscale_scaled_to_8bit():
    array = np.full((12, 12), 65535 // 2, dtype=np.uint16)
    image = Image.fromarray(array)
    assert image.mode.startswith("I;16")
    decoded = _rgb_array(load_image(encode(image, "PNG")))
    assert 120 <= decoded[0, 0, 0] <= 135


def test_greyscale_becomes_three_channels():
    decoded = load_image(encode(Image.new("L", (9, 9), 77), "PNG"))
    assert decoded.mode == "RGB" and tuple(np.asarray(decoded)[0, 0]) == (77, 77, 77)


def test_animated_gif_first_frame():
    frames = [Image.new("RGB", (10, 10), (255, 0, 0)), Image.new("RGB", (10, 10), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100)
    decoded = _rgb_array(load_image(buffer.getvalue()))
    assert decoded[5, 5, 0] > 200 and decoded[5, 5, 2] < 50


def test_truncated_image_is_invalid():
    data = encode(product_image("acme", 2), "JPEG")
    with pytest.raises(InvalidImageError, match="truncated|corrupt"):
        load_image(data[: len(data) // 2])


@pytest.mark.parametrize("data", [b"not an image at all", b"%PDF-1.4 fake", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20])
def test_non_images_are_invalid(data):
    with pytest.raises(InvalidImageError):
        load_image(data)


def test_empty_file_is_invalid():
    with pytest.raises(InvalidImageError, match="empty"):
        load_image(b"")


def test_byte_limit():
    data = encode(product_image("acme", 3), "PNG")
    with pytest.raises(ImageTooLargeError, match="bytes"):
        load_image(data, limits=Limits(max_file_bytes=len(data) - 1))


def test_decompression_bomb_rejected_before_decoding():
    # 10000 x 10000 pixels of one colour compress to a few kilobytes
    bomb = encode(Image.new("L", (10000, 10000), 0), "PNG")
    assert len(bomb) < 200_000
    with pytest.raises(ImageTooLargeError, match="pixels"):
        load_image(bomb, limits=Limits(max_pixels=40_000_000))


@pytest.mark.parametrize("name, data, decodable", corpus(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_writable_format_and_its_broken_variants_give_an_image_or_a_typed_error(name, data, decodable):
    try:
        image = load_image(data, name=name)
    except (InvalidImageError, ImageTooLargeError):
        assert decodable is not True, f"{name} should decode"
        return
    assert decodable is not False, f"{name} should be refused"
    assert image.mode == "RGB" and image.size[0] > 0
