"""PNG bytes for images and masks: how S3 stores pixels, and how any reader gets them back safely.

PNG because it is lossless (masks and training targets must not drift through re-encoding) and every
tool opens it. Masks are 1-bit PNGs: a 1024² mask is a few kB. Decoding checks the format and the
pixel count before reading pixels, so a corrupt or hostile file fails with ``CorruptImageError``
instead of a decompression bomb or a half-decoded image.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

MAX_PIXELS = 64_000_000


class CorruptImageError(ValueError):
    """Bytes that are not a readable PNG of an acceptable size."""


def encode_image(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


def encode_mask(mask: np.ndarray) -> bytes:
    """A boolean (H, W) array as a 1-bit PNG."""
    array = np.asarray(mask)
    if array.ndim != 2:
        raise ValueError(f"mask: expected a 2-D array, got shape {array.shape}")
    buf = io.BytesIO()
    Image.fromarray(array.astype(bool)).save(buf, format="PNG")
    return buf.getvalue()


def _open_png(blob: bytes, max_pixels: int) -> Image.Image:
    if not isinstance(blob, bytes | bytearray | memoryview) or len(blob) == 0:
        raise CorruptImageError("empty image bytes")
    try:
        image = Image.open(io.BytesIO(blob))
        if image.format != "PNG":
            raise CorruptImageError(f"expected PNG, got {image.format}")
        if image.width * image.height > max_pixels:
            raise CorruptImageError(f"{image.width}x{image.height} exceeds {max_pixels} pixels")
        image.load()
    except CorruptImageError:
        raise
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError... for bad bytes
        raise CorruptImageError(f"unreadable PNG ({type(exc).__name__}: {exc})") from None
    return image


def decode_image(blob: bytes, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """PNG bytes to an RGB PIL image."""
    return _open_png(blob, max_pixels).convert("RGB")


def decode_mask(blob: bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """PNG bytes to a boolean (H, W) array (nonzero = subject)."""
    return np.asarray(_open_png(blob, max_pixels).convert("L")) > 0
