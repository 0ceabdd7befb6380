"""Decoding untrusted image bytes: formats by content, limits before decoding, EXIF orientation."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from core.config.serving import LimitsConfig
from serving.errors import ApiError
from serving.uploads import decode_base64, decode_image, sniff_format
from tests.serving.samples import bomb_png, png_bytes

LIMITS = LimitsConfig(max_image_bytes=1_000_000, max_image_pixels=1_000_000)


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def error_of(data: bytes, limits: LimitsConfig = LIMITS) -> ApiError:
    with pytest.raises(ApiError) as info:
        decode_image(data, "references[0]", limits)
    assert info.value.detail.field == "references[0]"
    assert info.value.detail.message.startswith("references[0]: ")
    return info.value


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_accepted_formats_decode_to_rgb(fmt):
    source = Image.fromarray(np.full((80, 64, 4 if fmt != "JPEG" else 3), 200, np.uint8))
    image = decode_image(encode(source, fmt), "f", LIMITS)
    assert image.mode == "RGB" and image.size == (64, 80)
    assert sniff_format(encode(source, fmt)) == fmt


def test_dreambooth_photo_decodes(dreambooth):
    image = decode_image((dreambooth / "images" / "cat" / "00.jpg").read_bytes(), "f", LIMITS)
    assert image.size == (512, 512)


def test_exif_orientation_is_honoured():
    wide = np.zeros((64, 192, 3), np.uint8)
    wide[:, :32] = 255  # a white band on the left edge
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    data = encode(Image.fromarray(wide), "JPEG", exif=exif, quality=95)
    image = np.asarray(decode_image(data, "f", LIMITS))
    assert image.shape[:2] == (192, 64)  # portrait once the orientation is applied
    assert image[:32].mean() > 200 and image[-32:].mean() < 50  # the left band is now at the top


def test_limits_and_bad_bytes():
    assert error_of(b"").detail.status == 400
    too_big = error_of(png_bytes((700, 700), noise=True))
    assert (too_big.detail.status, too_big.detail.limit) == (413, 1_000_000)
    bomb = error_of(bomb_png(20_000, 20_000))  # beyond Pillow's own bomb limit too: the message is ours
    assert (bomb.detail.status, bomb.detail.limit) == (413, 1_000_000)
    assert bomb.detail.message == "references[0]: 400000000 pixels, limit is max_image_pixels 1000000"
    assert error_of(png_bytes()[:60]).detail.status == 400  # truncated
    assert error_of(b"\xff\xd8\xff" + b"\0" * 100).detail.status == 400  # a JPEG signature, then garbage
    for fmt in ("GIF", "BMP", "TIFF"):
        unsupported = error_of(png_bytes(fmt=fmt))
        assert unsupported.detail.status == 415 and unsupported.detail.limit == ["PNG", "JPEG", "WEBP"]
    webp_off = error_of(png_bytes(fmt="WEBP"), LimitsConfig(image_formats=["PNG", "JPEG"]))
    assert webp_off.detail.status == 415 and "a WEBP file" in webp_off.detail.message


def test_base64_sizes_are_checked_before_decoding():
    assert decode_base64("data:image/png;base64,aGVsbG8=", "f", 100) == b"hello"
    with pytest.raises(ApiError) as info:
        decode_base64("A" * 2000, "f", 100)
    assert info.value.detail.status == 413 and info.value.detail.limit == 100
    with pytest.raises(ApiError) as info:
        decode_base64("not base64 at all!", "f", 100)
    assert info.value.detail.status == 400


def animated(fmt: str) -> bytes:
    frames = [Image.fromarray(np.full((64, 64, 3), v, np.uint8)) for v in (0, 255)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format=fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["WEBP", "PNG"])
def test_animations_are_refused_not_cut_to_their_first_frame(fmt):
    error = error_of(animated(fmt))
    assert (error.detail.status, error.detail.limit) == (415, 1)
    assert error.detail.message == f"references[0]: an animated {fmt} (2 frames); send a still image"


def test_images_below_the_minimum_side_are_refused():
    error = error_of(png_bytes((1, 1)))
    assert (error.detail.status, error.detail.limit) == (422, 64)
    assert error.detail.message == "references[0]: 1×1 pixels, each side must be at least min_image_side 64"
    assert error_of(png_bytes((64, 63))).detail.limit == 64
    assert decode_image(png_bytes((16, 16)), "f", LimitsConfig(min_image_side=16)).size == (16, 16)
