"""Every kind of file a user can send either becomes an upright RGB image or a typed, explained error."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from engine.errors import CorruptImageError, ImageTooLargeError, ImageTooSmallError, UnsupportedImageError
from engine.images import decode_image, encode_image, fit_within, probe_image, resize_to, to_rgb
from tests.engine.samples import encode, photo
from tests.fakes.images import png_chunk, streamed_png


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


# -- only the documented formats, and checks before any decoding ------------------------------------

EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\n0 0 moveto 64 64 lineto stroke\nshowpage\n"


@pytest.mark.parametrize("check", [probe_image, decode_image])
def test_eps_is_never_opened(check, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pillow would hand an EPS file to Ghostscript; it must not even be identified."""
    from PIL import EpsImagePlugin

    def no_ghostscript(*args: object, **kwargs: object) -> None:
        raise AssertionError("Ghostscript was about to run")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", no_ghostscript)
    with pytest.raises(UnsupportedImageError, match="JPEG, PNG, WebP, GIF, BMP or TIFF"):
        check(EPS)


@pytest.mark.parametrize("fmt", ["PCX", "TGA", "ICO", "PPM", "SGI", "DDS"])
def test_formats_we_do_not_document_are_refused(fmt: str) -> None:
    data = encode(photo(48, 48), fmt)
    for check in (probe_image, decode_image):
        with pytest.raises(UnsupportedImageError):
            check(data)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_documented_formats_pass_the_probe(fmt: str) -> None:
    info = probe_image(encode(photo(80, 60), fmt))
    assert (info.width, info.height) == (80, 60)


def test_a_png_text_chunk_bomb_is_an_image_error() -> None:
    """A zTXt chunk that inflates past Pillow's limit raised a bare ValueError before."""
    import zlib

    bomb = png_chunk(b"zTXt", b"Comment\0\0" + zlib.compress(b"a" * (8 * 2**20), 9))
    data = streamed_png(64, 64, chunks=(bomb,))
    for check in (probe_image, decode_image):
        with pytest.raises(CorruptImageError):
            check(data)


def test_sixteen_bit_images_have_a_quarter_of_the_pixel_limit() -> None:
    """2 to 4 bytes a pixel before conversion: a 95 kB 16-bit PNG of 49 MP used to cost 1.2 GB."""
    data = streamed_png(7000, 7000, bit_depth=16)
    for check in (probe_image, decode_image):
        with pytest.raises(ImageTooLargeError, match="16 bits"):
            check(data, max_pixels=50_000_000)
    assert probe_image(streamed_png(2000, 2000, bit_depth=16), max_pixels=50_000_000).mode == "I;16"


def test_probe_refuses_from_the_header() -> None:
    with pytest.raises(ImageTooSmallError, match="too narrow"):
        probe_image(streamed_png(70000, 700))
    with pytest.raises(ImageTooLargeError, match="9 MP"):
        probe_image(streamed_png(3000, 3000), max_pixels=4_000_000)
    with pytest.raises(ImageTooSmallError, match="1x1"):
        probe_image(encode(Image.new("RGB", (1, 1)), "PNG"))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_probe_finds_a_truncated_file(fmt: str) -> None:
    data = encode(photo(200, 200), fmt)
    with pytest.raises(CorruptImageError):
        probe_image(data[: len(data) * 2 // 3])
