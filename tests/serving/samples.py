"""Image bytes for tests: real photos as base64, generated images, and malicious files."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image


def b64(path_or_bytes) -> str:
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else path_or_bytes.read_bytes()
    return base64.b64encode(data).decode()


def png_from(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def png_bytes(size=(64, 64), noise=False, fmt="PNG") -> bytes:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (*size[::-1], 3), dtype=np.uint8) if noise else np.zeros((*size[::-1], 3), np.uint8)
    return png_from(pixels, fmt)


def bomb_png(width: int, height: int) -> bytes:
    """A PNG header declaring a huge canvas, with almost no data behind it."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
