"""Which subjects to fine-tune, their class words, and their photos as model-sized arrays.

``--subjects`` takes a folder of subject folders (``../shared/dreambooth/images``), one subject folder
(holding images), or a comma-separated list of subject folders; local paths or URIs. A subject is named
after its folder; its class word comes from ``finetune.class_words`` or the ``finetune.classes`` file
(the DreamBooth benchmark's ``subjects.json``).

Problems that concern one subject (no class word, an unreadable photo) fail that subject only, with
the reason; problems with the whole request (no such folder, no subjects) stop the command.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import numpy as np
import pyarrow.fs as pafs

from core import storage
from core.config.finetune import FinetuneSection
from core.jedi.images import resize_center_crop
from core.subjects import validate_subject_id
from training.shell.images import (
    IMAGE_SUFFIXES,
    SubjectDataError,
    decode_image,
    entries,
    image_paths,
    is_image,
    load_images,
)


@dataclass(frozen=True)
class SubjectSpec:
    name: str
    source: str
    class_word: str | None
    error: str | None = None


def _subject_folders(argument: str) -> list[str]:
    parts = [p.strip() for p in argument.split(",") if p.strip()]
    if not parts:
        raise ValueError("--subjects: empty; give a folder of subject folders, a subject folder, or a list")
    if len(parts) > 1:
        return [storage.resolve(p) for p in parts]
    root = storage.resolve(parts[0])
    found = entries(root, "--subjects")
    if any(is_image(e) for e in found):
        return [root]
    folders = [storage.join(root, e.base_name) for e in found if e.type == pafs.FileType.Directory]
    if not folders:
        raise ValueError(f"--subjects: {root} holds neither images nor subject folders")
    return folders


def _class_file(path: str) -> dict[str, str]:
    fs, p = storage.filesystem(path)
    if fs.get_file_info(p).type != pafs.FileType.File:
        raise ValueError(f"finetune.classes: no such file {path}")
    with fs.open_input_stream(p) as f:
        text = f.read()
    try:
        rows = json.loads(text)
        return {str(r["subject"]): str(r["class"]) for r in rows}
    except (TypeError, KeyError, json.JSONDecodeError) as exc:
        raise ValueError(f'finetune.classes: {path} must be a JSON list of {{"subject", "class"}} ({exc})') from None


def discover(argument: str, cfg: FinetuneSection) -> list[SubjectSpec]:
    """The subjects named by ``--subjects``, each with its class word (or the reason it has none)."""
    folders = _subject_folders(argument)
    names = [folder.rstrip("/").rsplit("/", 1)[-1] for folder in folders]
    classes = dict(cfg.class_words)
    if any(name not in classes for name in names):
        classes = {**_class_file(storage.resolve(cfg.classes)), **classes}
    specs = []
    for name, folder in zip(names, folders, strict=True):
        word = classes.get(name)
        error = (
            None if word else (f"subject {name!r}: no class word; add it to finetune.class_words or to {cfg.classes}")
        )
        specs.append(SubjectSpec(name=name, source=folder, class_word=word, error=error))
    return specs


def subject_id(template: str, subject: str, method: str) -> str:
    """The output id: the template filled, lower-cased, characters outside ``[a-z0-9_-]`` become ``-``."""
    raw = template.replace("{subject}", subject).replace("{method}", method).lower()
    return validate_subject_id(re.sub(r"[^a-z0-9_-]+", "-", raw).strip("-_")[:64])


def load_extra_instances(path: str, resolution: int) -> tuple[np.ndarray, list[str]]:
    """Extra instance images with their prompts from a Parquet file of ``image`` (encoded bytes) and
    ``prompt`` (a ``{0}``/``{1}`` template): ``((N, R, R, 3) uint8, prompts)``."""
    import pyarrow.parquet as pq

    fs, p = storage.filesystem(path)
    table = pq.read_table(p, filesystem=fs, columns=["image", "prompt"])
    arrays, prompts = [], []
    for i, row in enumerate(table.to_pylist()):
        img = decode_image(row["image"], f"{path} row {i}")
        arrays.append(np.asarray(resize_center_crop(img, resolution, resolution), dtype=np.uint8))
        if "{0}" not in row["prompt"]:
            raise SubjectDataError(f"{path} row {i}: prompt {row['prompt']!r} has no {{0}} for the identifier")
        prompts.append(row["prompt"])
    images = np.stack(arrays) if arrays else np.zeros((0, resolution, resolution, 3), np.uint8)
    return images, prompts


def load_subject(source: str, resolution: int) -> np.ndarray:
    """A subject's photos, every one decoded (so a bad file fails the subject before training starts)."""
    paths = image_paths(source)
    if not paths:
        raise SubjectDataError(f"{source}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return load_images(paths, resolution)
