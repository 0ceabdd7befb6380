"""ToyWorld training data as a Ray Data job: same-subject sets (S3 schema) and single captioned images.

Layout of a data root::

    sets/shard-NNNNN.parquet     same-subject sets, S3 ``SETS_SCHEMA`` (``core.s3``), read by the JeDi
                                 trainer as an ``s3`` source
    singles/shard-NNNNN.parquet  ``image`` (PNG), ``caption`` and the answer key (``shape``, ``colour``,
                                 ``scene``): the trainer's ``captions`` source (sets of one)
    summary.json                 counts, subjects, held-out subjects, seconds

Item ``i`` of either table is rendered from ``key(seed, kind, i)`` alone, so a shard's content does
not depend on how the job was split into tasks, and a rerun skips shards that already exist (a killed
job resumes without duplicates). Only training subjects appear: the novel subjects of
``world.novel_subjects`` never do (tested by reading every image back with the oracle).

Sets: subject ``i mod len(training_subjects)`` (balanced), every image in a different scene with its
own layout. Each image is captioned in full (``a red circle on the snow``) or, with probability
``generic_fraction``, by scene only (``a thing on the snow``), so that identity has to come from the
other images of the set.
"""

from __future__ import annotations

import hashlib
import json
import time

import numpy as np
import pyarrow as pa

from core import storage
from core.config.toyworld import ToyWorldDataSection
from core.logs import get_logger
from core.s3 import SETS_DIR, SUMMARY_FILE, ImageSet, encode_image, sets_table, write_bytes, write_table
from core.toyworld.render import random_layout, render
from core.toyworld.world import SCENES, Subject, caption, novel_subjects, training_subjects

log = get_logger("toyworld.data")

SINGLES_DIR = "singles"
SINGLES_SCHEMA = pa.schema(
    [
        pa.field("image", pa.binary(), nullable=False),
        pa.field("caption", pa.string(), nullable=False),
        pa.field("shape", pa.string(), nullable=False),
        pa.field("colour", pa.string(), nullable=False),
        pa.field("scene", pa.string(), nullable=False),
    ]
)


def item_rng(seed: int, kind: str, index: int) -> np.random.Generator:
    """The generator of item ``index`` of ``kind`` (``sets``/``singles``/an evaluation split)."""
    digest = hashlib.blake2b(f"toyworld/{seed}/{kind}/{index}".encode(), digest_size=8).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


def render_set(seed: int, index: int, data: ToyWorldDataSection) -> ImageSet:
    subjects = training_subjects()
    subject = subjects[index % len(subjects)]
    rng = item_rng(seed, "sets", index)
    scenes = _scenes(rng, data.set_size)
    images, masks, prompts = [], [], []
    for scene in scenes:
        image, mask = render(subject, scene, random_layout(rng, data.size), data.size)
        images.append(image)
        masks.append(mask)
        prompts.append(caption(subject, scene, generic=bool(rng.random() < data.generic_fraction)))
    from PIL import Image

    return ImageSet(
        set_id=f"toyworld-{index:07d}",
        category=subject.shape,
        subject=subject.name,
        images=[Image.fromarray(im) for im in images],
        masks=masks,
        prompts=prompts,
        seeds=[seed] * len(images),
        seed=seed,
        consistency=1.0,
    )


def _scenes(rng: np.random.Generator, count: int) -> list[str]:
    """``count`` scenes, all different while there are enough scenes, then repeating."""
    names = list(SCENES)
    out: list[str] = []
    while len(out) < count:
        out += [names[i] for i in rng.permutation(len(names))][: count - len(out)]
    return out


def render_single(seed: int, index: int, data: ToyWorldDataSection) -> dict:
    rng = item_rng(seed, "singles", index)
    subjects = training_subjects()
    subject = subjects[int(rng.integers(len(subjects)))]
    scene = list(SCENES)[int(rng.integers(len(SCENES)))]
    image, _ = render(subject, scene, random_layout(rng, data.size), data.size)
    from PIL import Image

    return {
        "image": encode_image(Image.fromarray(image)),
        "caption": caption(subject, scene, generic=bool(rng.random() < data.generic_fraction)),
        "shape": subject.shape,
        "colour": subject.colour,
        "scene": scene,
    }


def shard_path(root: str, kind: str, shard: int) -> str:
    return storage.join(root, SETS_DIR if kind == "sets" else SINGLES_DIR, f"shard-{shard:05d}.parquet")


def write_shard(batch: dict, root: str, seed: int, data: dict) -> dict:
    """Ray Data task: render and write the shards named in ``batch`` (skipping ones that exist)."""
    section = ToyWorldDataSection.model_validate(data)
    written = []
    for kind, shard in zip(batch["kind"], batch["shard"], strict=True):
        kind, shard = str(kind), int(shard)
        path = shard_path(root, kind, shard)
        total = section.sets if kind == "sets" else section.singles
        indices = range(shard * section.shard_size, min(total, (shard + 1) * section.shard_size))
        if not storage.exists(path):
            if kind == "sets":
                table = sets_table(render_set(seed, i, section).to_row() for i in indices)
            else:
                table = pa.Table.from_pylist([render_single(seed, i, section) for i in indices], schema=SINGLES_SCHEMA)
            write_table(table, path)
            written.append(True)
        else:
            written.append(False)
    return {"kind": list(batch["kind"]), "shard": list(batch["shard"]), "written": written}


def write_dataset(root: str, data: ToyWorldDataSection, seed: int) -> dict:
    """Render the whole dataset into ``root`` with Ray Data (one task per shard); returns the summary."""
    import ray.data

    start = time.perf_counter()
    root = storage.resolve(root)
    jobs = [
        {"kind": kind, "shard": s}
        for kind, total in (("sets", data.sets), ("singles", data.singles))
        for s in range(-(-total // data.shard_size))
    ]
    results = (
        ray.data.from_items(jobs, override_num_blocks=len(jobs))
        .map_batches(
            write_shard,
            batch_size=1,
            fn_kwargs={"root": root, "seed": seed, "data": data.model_dump()},
        )
        .take_all()
    )
    summary = {
        "sets": data.sets,
        "set_size": data.set_size,
        "singles": data.singles,
        "size": data.size,
        "generic_fraction": data.generic_fraction,
        "seed": seed,
        "shards_written": sum(bool(r["written"]) for r in results),
        "shards_skipped": sum(not r["written"] for r in results),
        "training_subjects": [s.name for s in training_subjects()],
        "novel_subjects": [s.name for s in novel_subjects()],
        "seconds": round(time.perf_counter() - start, 2),
    }
    write_bytes(json.dumps(summary, indent=1).encode(), storage.join(root, SUMMARY_FILE))
    log.info("toyworld data written", root=root, **{k: summary[k] for k in ("sets", "singles", "shards_written")})
    return summary


def subject_of(name: str) -> Subject:
    """The subject a set's ``subject`` field names (``"red circle"``)."""
    colour, _, shape = name.partition(" ")
    return Subject(shape, colour)
