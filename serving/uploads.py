"""Untrusted bytes → images, with every limit checked before the expensive step it protects.

Order of checks for one image: encoded size → format sniffed from the magic bytes (never the file
name or the declared content type) → width×height read from the header only → full decode →
EXIF orientation applied → RGB. A decompression bomb (a small file declaring a huge canvas) is
refused at the header; a truncated or corrupt file fails the decode with a 400, never a 500.

The whole request body is capped before this, in ``serving.api.GuardMiddleware`` (a declared
``Content-Length`` over the limit is refused up front, a streamed body is counted as it arrives).
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

from core.config.serving import LimitsConfig
from serving.errors import ApiError

_MAGIC = {
    "PNG": (b"\x89PNG\r\n\x1a\n",),
    "JPEG": (b"\xff\xd8\xff",),
}


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
            width, height = image.size
            if width * height > limits.max_image_pixels:
                raise ApiError(
                    413,
                    field,
                    f"{field}: {width}×{height} = {width * height} pixels, limit is {limits.max_image_pixels}",
                    limit=limits.max_image_pixels,
                )
            if width < 1 or height < 1:
                raise ApiError(400, field, f"{field}: image has no pixels ({width}×{height})")
            image.load()
            image = ImageOps.exif_transpose(image)
            return image.convert("RGB")
    except ApiError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:  # PIL's own, larger limit
        limit = limits.max_image_pixels
        raise ApiError(413, field, f"{field}: {exc}; limit is max_image_pixels {limit}", limit=limit) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ApiError(400, field, f"{field}: not a readable {fmt} image ({exc})") from None
