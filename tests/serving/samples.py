"""Image bytes for tests: real photos as base64, generated images, malicious files, and requests
written by hand."""

from __future__ import annotations

import base64
import io
import socket

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


def raw_request(base_url: str, head: bytes, body: bytes = b"") -> tuple[int, dict, bytes]:
    """One HTTP/1.1 request written by hand to ``http://host:port`` (httpx refuses to send a
    malformed one): status, lower-cased headers, body."""
    host, port = base_url.removeprefix("http://").rstrip("/").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head + b"\r\n\r\n" + body)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    header, _, content = data.partition(b"\r\n\r\n")
    lines = header.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, content
