"""Every kind of file a user can send either becomes an upright RGB image or a typed, explained error."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from engine.errors import CorruptImageError, ImageTooLargeError, ImageTooSmallError, UnsupportedImageError
from engine.images import decode_image, encode_image, fit_within, resize_to, to_rgb
from tests.engine.samples import encode, photo


def test_plain_jpeg_decodes_to_rgb() -> None:
    image = decode_image(encode(photo(80, 60), "JPEG"))
    assert (image.mode, image.size) == ("RGB", (80, 60))


def test_exif_orientation_is_applied() -> None:
    source = photo(80, 40)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view": a phone held upright
    image = decode_image(encode(source, "JPEG", exif=exif))
    assert image.size == (40, 80)


def test_alpha_is_flattened_onto_white() -> None:
    rgba = Image.new("RGBA", (40, 40), (255, 0, 0, 0))  # fully transparent red
    image = decode_image(encode(rgba, "PNG"))
    assert image.mode == "RGB"
    assert image.getpixel((5, 5)) == (255, 255, 255)


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [("L", "PNG"), ("1", "PNG"), ("P", "PNG"), ("LA", "PNG"), ("CMYK", "JPEG"), ("CMYK", "TIFF")],
)
def test_other_modes_become_rgb(mode: str, fmt: str) -> None:
    source = photo(40, 40).convert(mode)
    image = decode_image(encode(source, fmt))
    assert image.mode == "RGB"


def test_palette_with_transparency() -> None:
    source = photo(40, 40).convert("P")
    source.info["transparency"] = 0
    assert decode_image(encode(source, "PNG", transparency=0)).mode == "RGB"


def test_sixteen_bit_grayscale_keeps_its_range() -> None:
    ramp = np.tile(np.linspace(0, 65535, 64, dtype=np.uint16), (40, 1))
    image = decode_image(encode(Image.fromarray(ramp), "PNG"))
    values = np.asarray(image)[..., 0]
    assert image.mode == "RGB"
    assert values.min() == 0
    assert values.max() == 255


def test_float_image_is_stretched() -> None:
    data = np.linspace(-1, 1, 48 * 48, dtype=np.float32).reshape(48, 48)
    image = to_rgb(Image.fromarray(data, "F"))
    assert np.asarray(image).max() == 255


def test_first_frame_of_an_animation() -> None:
    frames = [Image.new("RGB", (40, 40), c) for c in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    image = decode_image(buffer.getvalue())
    assert image.getpixel((1, 1))[0] > 200


def test_not_an_image() -> None:
    with pytest.raises(UnsupportedImageError, match="not an image"):
        decode_image(b"%PDF-1.7 definitely not a picture")


def test_empty_file() -> None:
    with pytest.raises(UnsupportedImageError, match="empty"):
        decode_image(b"")


def test_truncated_jpeg_is_corrupt() -> None:
    data = encode(photo(200, 200), "JPEG")
    with pytest.raises(CorruptImageError):
        decode_image(data[: len(data) // 2])


def test_too_many_pixels_is_refused_before_decoding() -> None:
    data = encode(Image.new("L", (3000, 3000)), "PNG")  # compresses to a few kB: a decompression bomb
    with pytest.raises(ImageTooLargeError, match="9 MP"):
        decode_image(data, max_pixels=4_000_000)


def test_tiny_image_is_refused() -> None:
    with pytest.raises(ImageTooSmallError, match="1x1"):
        decode_image(encode(Image.new("RGB", (1, 1)), "PNG"))


def test_very_narrow_image_is_refused() -> None:
    with pytest.raises(ImageTooSmallError, match="too narrow"):
        decode_image(encode(Image.new("RGB", (2000, 40)), "PNG"))


def test_fit_within_keeps_aspect() -> None:
    assert fit_within(400, 300, 128) == (128, 96)
    assert fit_within(300, 400, 128) == (96, 128)
    assert fit_within(10, 10_000, 100) == (1, 100)


def test_resize_to_returns_same_image_when_already_that_size() -> None:
    source = photo(64, 48)
    assert resize_to(source, 64) is source
    assert resize_to(source, 32).size == (32, 24)


@pytest.mark.parametrize(("fmt", "magic"), [("png", b"\x89PNG"), ("jpeg", b"\xff\xd8")])
def test_encode(fmt: str, magic: bytes) -> None:
    data = encode_image(photo(64, 48), fmt)
    assert data.startswith(magic)
    assert Image.open(io.BytesIO(data)).size == (64, 48)


def test_encode_rejects_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown output format"):
        encode_image(photo(), "gif")
