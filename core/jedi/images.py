"""Turning user-supplied reference images into model-sized tensors, with clear errors.

Policy (documented in the pipeline): convert to RGB, resize so the shorter side matches the target
side (bicubic), centre-crop to the target height × width, scale to [-1, 1]. A crop keeps the
subject's aspect ratio; references are usually centred photos of the subject.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

ImageLike = Image.Image | np.ndarray | torch.Tensor


def _to_pil(image: ImageLike, name: str) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] not in (1, 3):
            raise ValueError(f"{name}: expected a (3, H, W) tensor in [0, 1], got shape {tuple(image.shape)}")
        image = image.detach().cpu()
        image = (image if image.dtype == torch.uint8 else image.float()).permute(1, 2, 0).numpy()
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{name}: expected a PIL image, numpy array or tensor, got {type(image).__name__}")
    arr = image
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4) or min(arr.shape[:2]) < 1:
        raise ValueError(f"{name}: expected an H×W×3 image array, got shape {tuple(image.shape)}")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"{name}: expected numbers, got dtype {arr.dtype}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    if arr.dtype == np.uint8:
        data = arr
    else:
        if arr.min() < 0.0 or arr.max() > 1.0:
            raise ValueError(f"{name}: float images must lie in [0, 1], got [{arr.min():.3g}, {arr.max():.3g}]")
        data = (arr * 255.0).round().astype(np.uint8)
    if data.shape[2] == 1:
        data = np.repeat(data, 3, axis=2)
    return Image.fromarray(data[:, :, :3])


def resize_center_crop(image: Image.Image, height: int, width: int) -> Image.Image:
    scale = max(height / image.height, width / image.width)
    size = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
    image = image.resize(size, Image.Resampling.BICUBIC)
    left, top = (image.width - width) // 2, (image.height - height) // 2
    return image.crop((left, top, left + width, top + height))


def prepare_images(images, height: int, width: int, name: str = "reference_images") -> torch.Tensor:
    """(K, 3, H, W) float tensor in [-1, 1] from a list of image-likes."""
    if isinstance(images, (Image.Image, np.ndarray, torch.Tensor)):
        images = [images]
    images = list(images) if images is not None else []
    arrays = []
    for i, img in enumerate(images):
        pil = resize_center_crop(_to_pil(img, f"{name}[{i}]"), height, width)
        arrays.append(np.asarray(pil, dtype=np.float32) / 127.5 - 1.0)
    if not arrays:
        return torch.empty(0, 3, height, width)
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
