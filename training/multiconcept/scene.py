"""A multi-concept scene on storage: 1..M images, K ≥ 2 concepts, optionally their true masks.

Layout of a scene folder (local path or URI)::

    <scene>/
      scene.json          {"concepts": [{"token": "<c0>", "initializer": "dog"}, ...],
                           "images": {"00.png": [0, 1, 2], ...}}   # optional: concepts per image
      images/00.png ...   the pictures (any size; resized and centre-cropped to multiconcept.resolution)
      masks/00/0.png ...  optional ground truth: masks/<image stem>/<concept index>.png (white = concept),
                          the image's size; used only to measure mask IoU, never to train

``multiconcept.concepts`` overrides the file's concepts. Without ``images`` every concept is in every
image. Masks go through the same resize and crop as their image (then threshold at half), so the
geometry matches exactly.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass

import numpy as np
import pyarrow.fs as pafs
from PIL import Image

from core import storage
from core.config.multiconcept import ConceptSection, MultiConceptSection
from core.jedi.images import resize_center_crop
from training.shell.images import SubjectDataError, decode_image, image_paths, read_bytes

MAX_IMAGES = 64
SAMPLE_SLOT = re.compile(r"\{c(\d+)\}")


@dataclass(frozen=True)
class Scene:
    name: str
    image_names: list[str]
    images: np.ndarray  # (M, R, R, 3) uint8
    concepts: list[ConceptSection]
    present: np.ndarray  # (M, K) bool: concept k appears in image m
    truth: np.ndarray | None  # (M, K, R, R) bool ground-truth masks, when given

    @property
    def tokens(self) -> list[str]:
        return [c.token for c in self.concepts]


def _is_file(path: str) -> bool:
    fs, p = storage.filesystem(path)
    return fs.get_file_info(p).type == pafs.FileType.File


def fill_concepts(prompt: str, tokens: list[str]) -> str:
    """``{cK}`` → concept K's token (plain replacement: prompts are user text)."""
    for k, token in enumerate(tokens):
        prompt = prompt.replace(f"{{c{k}}}", token)
    return prompt


def _check_concepts(concepts: list[ConceptSection], cfg: MultiConceptSection) -> None:
    if len(concepts) < 2:
        raise ValueError(f"multiconcept.concepts: at least 2 concepts (subjects and background), got {len(concepts)}")
    tokens = [c.token for c in concepts]
    if len(set(tokens)) != len(tokens):
        raise ValueError(f"multiconcept.concepts: duplicate tokens in {tokens}")
    for prompt in cfg.sample_prompts:
        for slot in SAMPLE_SLOT.findall(prompt):
            if int(slot) >= len(concepts):
                raise ValueError(
                    f"multiconcept.sample_prompts: {prompt!r} uses {{c{slot}}} but the scene has {len(concepts)} concepts"
                )


def load_scene(root: str, cfg: MultiConceptSection) -> Scene:
    """Read and check a scene folder (every problem is a ``ValueError`` naming the file or field)."""
    root = storage.resolve(root)
    fs, where = storage.filesystem(root)
    if fs.get_file_info(where).type != pafs.FileType.Directory:
        raise ValueError(f"--scene: {root} is not a directory (a scene folder holds images/ and scene.json)")
    meta_path = storage.join(root, "scene.json")
    meta = {}
    if _is_file(meta_path):
        try:
            meta = json.loads(read_bytes(meta_path))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{meta_path}: not JSON ({exc})") from None
    if cfg.concepts is not None:
        concepts = list(cfg.concepts)
    elif "concepts" in meta:
        try:
            concepts = [ConceptSection.model_validate(c) for c in meta["concepts"]]
        except Exception as exc:
            raise ValueError(f"{meta_path}: concepts: {exc}") from None
    else:
        raise ValueError(f"multiconcept.concepts: not set and {meta_path} names no concepts")
    _check_concepts(concepts, cfg)
    paths = image_paths(storage.join(root, "images"), "--scene")
    if not 1 <= len(paths) <= MAX_IMAGES:
        raise ValueError(f"{root}/images: {len(paths)} images; 1 to {MAX_IMAGES} are supported")
    names = [p.rstrip("/").rsplit("/", 1)[-1] for p in paths]
    side = cfg.resolution
    images, truth, present = [], [], []
    for name, path in zip(names, paths, strict=True):
        picture = decode_image(read_bytes(path), path)
        images.append(np.asarray(resize_center_crop(picture, side, side), dtype=np.uint8))
        listed = meta.get("images", {}).get(name, list(range(len(concepts))))
        if not listed or any(not isinstance(k, int) or not 0 <= k < len(concepts) for k in listed):
            raise ValueError(f"{meta_path}: images.{name}: concept indices must lie in 0..{len(concepts) - 1}")
        present.append([k in listed for k in range(len(concepts))])
        stem = name.rsplit(".", 1)[0]
        mask_paths = [storage.join(root, "masks", stem, f"{k}.png") for k in range(len(concepts))]
        if any(_is_file(m) for m in mask_paths):
            truth.append([_mask(m, picture.size, side) for m in mask_paths])
    if truth and len(truth) != len(images):
        raise ValueError(f"{root}/masks: ground truth is given for {len(truth)} of {len(images)} images; all or none")
    name = root.rstrip("/").rsplit("/", 1)[-1]
    return Scene(
        name=name,
        image_names=names,
        images=np.stack(images),
        concepts=concepts,
        present=np.array(present, dtype=bool),
        truth=np.array(truth, dtype=bool) if truth else None,
    )


def _mask(path: str, size: tuple[int, int], side: int) -> np.ndarray:
    if not _is_file(path):
        raise ValueError(f"{path}: missing (an image with ground truth needs one mask per concept)")
    mask = decode_image(read_bytes(path), path).convert("L")
    if mask.size != size:
        raise SubjectDataError(f"{path}: mask is {mask.size[0]}x{mask.size[1]}, its image {size[0]}x{size[1]}")
    return np.asarray(resize_center_crop(mask, side, side)) > 127


def write_scene(
    out: str,
    images: list[Image.Image],
    concepts: list[ConceptSection],
    truth: list[list[np.ndarray]] | None = None,
) -> str:
    """Write a scene folder (``truth[m][k]``: image m's mask of concept k, bool, the image's size)."""
    fs, root = storage.filesystem(out)
    fs.create_dir(f"{root}/images", recursive=True)
    meta = {"concepts": [c.model_dump(mode="json") for c in concepts]}
    for m, image in enumerate(images):
        _write_png(fs, f"{root}/images/{m:02d}.png", image)
        for k, mask in enumerate(truth[m] if truth else []):
            fs.create_dir(f"{root}/masks/{m:02d}", recursive=True)
            _write_png(fs, f"{root}/masks/{m:02d}/{k}.png", Image.fromarray(mask.astype(np.uint8) * 255))
    with fs.open_output_stream(f"{root}/scene.json") as f:
        f.write(json.dumps(meta, indent=1).encode())
    return storage.resolve(out)


def _write_png(fs, path: str, image: Image.Image) -> None:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    with fs.open_output_stream(path) as f:
        f.write(buffer.getvalue())
