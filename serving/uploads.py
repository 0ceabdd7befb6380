"""Untrusted bytes → images, with every limit checked before the expensive step it protects.

Order of checks for one image: encoded size → format sniffed from the magic bytes (never the file
name or the declared content type) → width×height read from the header only (at most
``max_image_pixels``, at least ``min_image_side`` a side) → a single frame → full decode → EXIF
orientation applied → RGB. A decompression bomb (a small file declaring a huge canvas) is refused at
the header; a truncated or corrupt file fails the decode with a 400, never a 500.

Animated files (WebP, APNG) are refused rather than cut to their first frame: a reference is one
photo of the subject, and which frame a decoder shows first is not something a client can see in
its request, so using one silently would make the result depend on a choice nobody made.

The whole request body is capped before this, in ``serving.api.GuardMiddleware`` (a declared
``Content-Length`` over the limit is refused up front, a streamed body is counted as it arrives).
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

from core.config.serving import LimitsConfig
from serving.errors import ApiError

_MAGIC = {
    "PNG": (b"\x89PNG\r\n\x1a\n",),
    "JPEG": (b"\xff\xd8\xff",),
}


_PILLOW_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")


def sniff_format(data: bytes) -> str | None:
    for fmt, prefixes in _MAGIC.items():
        if data.startswith(prefixes):
            return fmt
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def decode_base64(text: str, field: str, max_bytes: int) -> bytes:
    """Decode base64 (optionally a ``data:image/...;base64,`` URL) after checking its decoded size."""
    if text.startswith("data:"):
        _, sep, text = text.partition(",")
        if not sep:
            raise ApiError(400, field, f"{field}: data URL without a ',' before the payload")
    text = "".join(text.split())
    if len(text) * 3 // 4 > max_bytes + 2:
        raise ApiError(
            413, field, f"{field}: image is about {len(text) * 3 // 4} bytes, limit is {max_bytes}", limit=max_bytes
        )
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, field, f"{field}: not valid base64") from None


def decode_image(data: bytes, field: str, limits: LimitsConfig) -> Image.Image:
    """An RGB image from untrusted bytes, or an ``ApiError`` naming ``field`` and the limit."""
    if not data:
        raise ApiError(400, field, f"{field}: the file is empty (0 bytes)")
    if len(data) > limits.max_image_bytes:
        raise ApiError(
            413,
            field,
            f"{field}: image is {len(data)} bytes, limit is {limits.max_image_bytes}",
            limit=limits.max_image_bytes,
        )
    fmt = sniff_format(data)
    if fmt not in limits.image_formats:
        found = f"a {fmt} file" if fmt else "not a recognised image"
        raise ApiError(
            415,
            field,
            f"{field}: {found}; accepted formats are {', '.join(limits.image_formats)}",
            limit=list(limits.image_formats),
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=[fmt])
            _check_header(image, fmt, field, limits)
            image.load()
            image = ImageOps.exif_transpose(image)
            return image.convert("RGB")
    except ApiError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own bomb check fires in ``Image.open`` above its (larger) limit, before ours can;
        # the client is told ours, which is the one that applies.
        found = _PILLOW_BOMB_PIXELS.search(str(exc))
        raise _too_many_pixels(field, found.group(1) if found else "too many", limits.max_image_pixels) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ApiError(400, field, f"{field}: not a readable {fmt} image ({exc})") from None


def _too_many_pixels(field: str, pixels, limit: int) -> ApiError:
    return ApiError(413, field, f"{field}: {pixels} pixels, limit is max_image_pixels {limit}", limit=limit)


def _check_header(image: Image.Image, fmt: str, field: str, limits: LimitsConfig) -> None:
    """Limits that the header alone decides, before any pixel is decoded."""
    width, height = image.size
    if width * height > limits.max_image_pixels:
        raise _too_many_pixels(field, f"{width}×{height} = {width * height}", limits.max_image_pixels)
    side = limits.min_image_side
    if width < side or height < side:
        raise ApiError(
            422,
            field,
            f"{field}: {width}×{height} pixels, each side must be at least min_image_side {side}",
            limit=side,
        )
    frames = getattr(image, "n_frames", 1)
    if frames > 1:
        raise ApiError(415, field, f"{field}: an animated {fmt} ({frames} frames); send a still image", limit=1)
