"""Training data for JeDi: every source becomes a Ray Dataset of *sets* in one row format.

Row format after ``decode_set`` (what the training loop consumes)::

    set_id   str            stable id of the set (seeds its randomness)
    pixels   uint8 (k, L, L, 3)  k images centre-cropped square and resized to the load size
    captions list[str]      one caption per image
    error    str            "" or why the set is unusable (it is then skipped and counted)

Sources (``train.jedi.data.sources``):

- ``folder``: one sub-folder per subject (video frames, multi-view renders, photos of one object);
  each image's caption is ``NAME.txt`` beside it, else the source's ``caption`` template with the
  sub-folder name.
- ``captions``: single captioned images (sets of one), LAION-style: a Parquet dataset with columns
  ``image`` (encoded bytes) and ``caption``, or a folder of images with ``NAME.txt`` captions.
- ``s3``: the S3 dataset written by ``s3jedi datagen`` (read with ``core.s3``).
- ``latents``: the output of ``s3jedi train precompute-latents`` (VAE posterior mean and std per
  image; decoded images are not needed, so the VAE stays out of the training workers).
- ``video``: clips as frame sets (``training.jedi.video``): a folder of clips or a Parquet list.

Multi-view sets (Objaverse renders, paper §4) are a ``folder`` source: one sub-folder per object
with its views as images and one caption for all of them (``NAME.txt`` per view, or the source's
``caption`` template with the object's folder name); docs/training-data.md shows the layout.

Decoding runs in Ray Data tasks, streaming, so data larger than memory works. The load size is
``resolution / min_crop_scale``: the loop crops from it without upsampling.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from PIL import Image

from core import storage
from core.config.training import DataSource, JeDiDataSection
from training.jedi.sampling import key_seed
from training.jedi.video import ClipError, sample_frames, video_clips
from training.shell.images import IMAGE_SUFFIXES, MAX_PIXELS


def load_size(data: JeDiDataSection) -> int:
    return math.ceil(data.resolution / data.min_crop_scale)


def _caption_for(image: Path, template: str, name: str) -> str:
    txt = image.with_suffix(".txt")
    return txt.read_text().strip() if txt.is_file() else template.format(name=name.replace("_", " "))


def folder_sets(path: Path, template: str) -> list[dict]:
    """One row per sub-folder: its images (sorted) and their captions."""
    if not path.is_dir():
        raise ValueError(f"data.sources: folder source {path} is not a directory")
    rows = []
    for sub in sorted(p for p in path.iterdir() if p.is_dir()):
        images = sorted(p for p in sub.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if images:
            rows.append(
                {
                    "set_id": f"folder:{sub.name}",
                    "paths": [str(p) for p in images],
                    "captions": [_caption_for(p, template, sub.name) for p in images],
                }
            )
    if not rows:
        raise ValueError(f"data.sources: folder source {path} has no sub-folders with images")
    return rows


def caption_folder_items(path: Path) -> list[dict]:
    rows = []
    for img in sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
        txt = img.with_suffix(".txt")
        if txt.is_file():
            rows.append(
                {
                    "set_id": f"captions:{img.relative_to(path)}",
                    "paths": [str(img)],
                    "captions": [txt.read_text().strip()],
                }
            )
    if not rows:
        raise ValueError(f"data.sources: captions source {path} has no images with NAME.txt captions")
    return rows


def _square(img: Image.Image, size: int) -> np.ndarray:
    img = img.convert("RGB")
    side = min(img.size)
    left, top = (img.width - side) // 2, (img.height - side) // 2
    img = img.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(img, dtype=np.uint8)


def _open(blob: bytes | str) -> Image.Image:
    img = Image.open(io.BytesIO(blob) if isinstance(blob, bytes) else blob)
    if img.width * img.height > MAX_PIXELS:
        raise ValueError(f"{img.width}x{img.height} exceeds {MAX_PIXELS} pixels")
    img.load()
    return img


def decode_set(row: dict, size: int, seed: int = 0, frames: int = 0) -> dict:
    """Decode a set's images (``paths``, encoded ``images``, or ``frames`` frames of a ``video`` clip
    at times keyed by ``seed`` and the set id); a bad image or clip marks the row unusable."""
    set_id = str(row["set_id"])
    out = {"set_id": set_id, "captions": [], "error": ""}
    try:
        if row.get("video"):
            images = sample_frames(row["video"], frames, np.random.default_rng(key_seed(seed, "video", set_id)))
            out["captions"] = [str(row["caption"])] * len(images)
        else:
            blobs = list(row["images"]) if row.get("images") is not None else list(row["paths"])
            out["captions"] = [str(c) for c in row["captions"]]
            if len(blobs) != len(out["captions"]) or not blobs:
                raise ValueError(f"{len(blobs)} images for {len(out['captions'])} captions")
            images = [_open(b) for b in blobs]
        out["pixels"] = np.stack([_square(im, size) for im in images])
    except Exception as exc:
        out["pixels"] = np.zeros((0, size, size, 3), dtype=np.uint8)
        reason = str(exc) if isinstance(exc, ClipError) else f"{type(exc).__name__}: {exc}"
        out["error"] = reason[:500]
    return out


def source_dataset(src: DataSource, data: JeDiDataSection, seed: int):
    """A Ray Dataset of decoded sets (or of latents rows) for one configured source."""
    import ray.data

    path = storage.resolve(src.path)
    size = load_size(data)
    if src.kind == "latents":
        return ray.data.read_parquet(path)
    if src.kind == "folder":
        ds = ray.data.from_items(folder_sets(Path(path), src.caption))
    elif src.kind == "video":
        ds = ray.data.from_items(video_clips(Path(path), src.caption))
    elif src.kind == "captions":
        if storage.is_uri(path) or Path(path).is_file() or any(Path(path).glob("*.parquet")):
            ds = ray.data.read_parquet(path).map(_caption_row)
        else:
            ds = ray.data.from_items(caption_folder_items(Path(path)))
    else:
        from core.s3 import read_training_sets

        ds = read_training_sets(path)
    return ds.randomize_block_order(seed=seed).map(
        decode_set, fn_kwargs={"size": size, "seed": seed, "frames": src.frames}
    )


def _caption_row(row: dict) -> dict:
    import hashlib

    blob = row["image"]
    return {"set_id": "captions:" + hashlib.sha1(blob).hexdigest()[:16], "images": [blob], "captions": [row["caption"]]}
