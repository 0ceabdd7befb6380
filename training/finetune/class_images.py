"""Class images for prior preservation: drawn by the base model in a Ray Data batch-inference job, cached.

The cache lives under the run storage, ``<storage>/class-images/<class>-<key>/00000.png ...``, where
the key hashes everything that decides the pictures (base model, prompt, steps, guidance, resolution,
seed). Image ``i`` is drawn with its own generator seeded from (seed, class, i), so a cache grows by
drawing only the missing indices, and a run that needs 100 images reuses the first 100 of 200.
All classes missing images are drawn in one job, before any subject trains, so subjects of the same
class never draw the same images twice.
"""

from __future__ import annotations

import hashlib
import io
import json
import re

import numpy as np
import pyarrow.fs as pafs

from core import storage
from core.config import S3JediConfig
from core.logs import get_logger
from training.shell.images import load_images

log = get_logger("finetune.class_images")
NAME_RE = re.compile(r"^(\d{5})\.png$")


def class_prompt(cfg: S3JediConfig, class_word: str) -> str:
    return cfg.finetune.class_images.prompt.replace("{1}", class_word)


def cache_dir(cfg: S3JediConfig, class_word: str) -> str:
    c = cfg.finetune.class_images
    decisive = {
        "model": cfg.models.sd,
        "prompt": class_prompt(cfg, class_word),
        "steps": c.steps,
        "guidance_scale": c.guidance_scale,
        "resolution": cfg.finetune.resolution,
        "seed": cfg.seed,
    }
    key = hashlib.sha256(json.dumps(decisive, sort_keys=True).encode()).hexdigest()[:12]
    slug = re.sub(r"[^a-z0-9]+", "-", class_word.lower()).strip("-") or "class"
    return storage.join(cfg.finetune.run.storage_path, "class-images", f"{slug}-{key}")


def present(directory: str) -> set[int]:
    fs, p = storage.filesystem(directory)
    if fs.get_file_info(p).type != pafs.FileType.Directory:
        return set()
    return {int(m.group(1)) for e in fs.get_file_info(pafs.FileSelector(p)) if (m := NAME_RE.match(e.base_name))}


def image_seed(seed: int, class_word: str, index: int) -> int:
    digest = hashlib.sha256(f"{seed}:class:{class_word}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


class ClassImageDrawer:
    """A Ray Data actor holding the base pipeline; each batch row is one (class, index) to draw."""

    def __init__(self, config: dict):
        import torch

        from core import zoo

        self.cfg = S3JediConfig.model_validate(config)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.float16 if self.device == "cuda" else None
        self.pipe = zoo.load("sd", self.cfg.models.sd, home=self.cfg.home, device=self.device, dtype=dtype)
        self.pipe.set_progress_bar_config(disable=True)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        c, side = self.cfg.finetune.class_images, self.cfg.finetune.resolution
        words = [str(w) for w in batch["class_word"]]
        gens = [
            torch.Generator(self.device).manual_seed(image_seed(self.cfg.seed, w, int(i)))
            for w, i in zip(words, batch["index"], strict=True)
        ]
        images = self.pipe(
            [class_prompt(self.cfg, w) for w in words],
            num_inference_steps=c.steps,
            guidance_scale=c.guidance_scale,
            height=side,
            width=side,
            generator=gens,
        ).images
        paths = []
        for image, directory, index in zip(images, batch["directory"], batch["index"], strict=True):
            fs, p = storage.filesystem(str(directory))
            fs.create_dir(p, recursive=True)
            buf = io.BytesIO()
            image.save(buf, format="PNG")
            final = f"{p}/{int(index):05d}.png"
            tmp = f"{p}/.{int(index):05d}.png.tmp"  # renamed into place: readers never see half a file
            with fs.open_output_stream(tmp) as out:
                out.write(buf.getvalue())
            fs.move(tmp, final)
            paths.append(final)
        return {"path": np.array(paths)}


def ensure_class_images(cfg: S3JediConfig, needs: dict[str, int]) -> dict[str, str]:
    """Make sure every class has at least its needed number of images; returns class → cache dir."""
    import ray.data
    from ray.data import ActorPoolStrategy

    dirs = {word: cache_dir(cfg, word) for word in needs}
    rows = []
    for word, count in needs.items():
        have = present(dirs[word])
        rows += [{"class_word": word, "index": i, "directory": dirs[word]} for i in range(count) if i not in have]
    if not rows:
        return dirs
    c, scaling = cfg.finetune.class_images, cfg.finetune.scaling
    log.info("drawing class images", images=len(rows), classes=len(needs), actors=c.actors)
    drawn = ray.data.from_items(rows).map_batches(
        ClassImageDrawer,
        fn_constructor_kwargs={"config": cfg.model_dump(mode="json")},
        batch_size=c.batch_size,
        compute=ActorPoolStrategy(size=c.actors),
        num_cpus=scaling.cpus_per_worker,
        num_gpus=scaling.gpus_per_worker if scaling.use_gpu else 0,
    )
    count = sum(len(batch["path"]) for batch in drawn.iter_batches(batch_size=None))
    log.info("class images ready", drawn=count)
    return dirs


def load_class_images(directory: str, count: int, resolution: int) -> np.ndarray:
    """The first ``count`` cached class images as ``(count, R, R, 3)`` uint8."""
    have = present(directory)
    missing = [i for i in range(count) if i not in have]
    if missing:
        raise ValueError(
            f"class images: {directory} lacks {len(missing)} of {count} images (e.g. {missing[0]:05d}.png)"
        )
    return load_images([storage.join(directory, f"{i:05d}.png") for i in range(count)], resolution)
