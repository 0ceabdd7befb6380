"""Training images on storage: which files count as images, and decoding them safely to arrays.

Shared by every recipe that reads photos (subjects, scenes, JeDi folder sources): one list of
suffixes, one pixel limit against decompression bombs, one error type for data that cannot be used.
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow.fs as pafs
from PIL import Image, UnidentifiedImageError

from core import storage
from core.jedi.images import resize_center_crop

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
MAX_PIXELS = 64_000_000  # refuse decompression bombs in training data too


class SubjectDataError(ValueError):
    """A subject's (or a scene's) data cannot be trained as given; other subjects go on."""


def entries(path: str, field: str) -> list[pafs.FileInfo]:
    """The entries of directory ``path`` (local or URI), sorted by name; ``field`` names the setting."""
    fs, p = storage.filesystem(path)
    if fs.get_file_info(p).type != pafs.FileType.Directory:
        raise ValueError(f"{field}: {path} is not a directory")
    return sorted(fs.get_file_info(pafs.FileSelector(p)), key=lambda e: e.base_name)


def is_image(entry: pafs.FileInfo) -> bool:
    return entry.type == pafs.FileType.File and f".{entry.extension.lower()}" in IMAGE_SUFFIXES


def image_paths(source: str, field: str = "--subjects") -> list[str]:
    return [e.path for e in entries(source, field) if is_image(e)]


def decode_image(blob: bytes, name: str) -> Image.Image:
    try:
        img = Image.open(io.BytesIO(blob))
        if img.width * img.height > MAX_PIXELS:
            raise SubjectDataError(f"{name}: {img.width}x{img.height} exceeds {MAX_PIXELS} pixels")
        img.load()
        return img.convert("RGB")
    except SubjectDataError:
        raise
    except UnidentifiedImageError:
        raise SubjectDataError(f"{name}: unreadable image (not a format PIL can decode)") from None
    except Exception as exc:
        raise SubjectDataError(f"{name}: unreadable image ({type(exc).__name__}: {exc})") from None


def read_bytes(path: str) -> bytes:
    fs, p = storage.filesystem(path)
    with fs.open_input_stream(p) as f:
        return f.read()


def load_images(paths: list[str], resolution: int) -> np.ndarray:
    """``(N, R, R, 3)`` uint8: each image RGB, shorter side resized to ``R``, centre-cropped."""
    arrays = [
        np.asarray(resize_center_crop(decode_image(read_bytes(path), path), resolution, resolution), dtype=np.uint8)
        for path in paths
    ]
    return np.stack(arrays) if arrays else np.zeros((0, resolution, resolution, 3), np.uint8)
