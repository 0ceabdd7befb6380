"""The dataset card: ``README.md`` at a dataset's root, in the Hugging Face format.

Its YAML header declares two configs (``default``: the sets, ``rejects``: what was dropped and why)
with their features, so ``datasets.load_dataset(root)`` and the Hub's viewer need nothing
else; its text says what a set is, how to load it, how many of everything there are, which models made
it under which licenses, and the provenance that ties it to the build.
"""

from __future__ import annotations

from typing import Any

import yaml

from core.s3.layout import REJECTS_DIR, SETS_DIR
from core.s3.schema import REJECTS_FIELDS, SCHEMA_VERSION, SETS_FIELDS, hf_features

CARD_FILE = "README.md"

MODEL_LICENSES = {
    "stabilityai/stable-diffusion-xl-base-1.0": "CreativeML Open RAIL++-M",
    "stabilityai/stable-diffusion-2-inpainting": "CreativeML Open RAIL++-M",
    "diffusers/stable-diffusion-xl-1.0-inpainting-0.1": "CreativeML Open RAIL++-M",
    "timbrooks/instruct-pix2pix": "MIT",
    "hf-hub:timm/vit_base_patch32_clip_224.openai": "Apache-2.0 (timm's release of OpenAI CLIP, itself MIT)",
    "hf-hub:timm/vit_large_patch14_clip_224.openai": "Apache-2.0 (timm's release of OpenAI CLIP, itself MIT)",
    "ShilongLiu/GroundingDINO": "Apache-2.0",
    "ybelkada/segment-anything": "Apache-2.0",
    "Qwen/Qwen2.5-1.5B-Instruct": "Apache-2.0",
    "Qwen/Qwen2.5-7B-Instruct": "Apache-2.0",
    "tiny": "random weights made by s3jedi (Apache-2.0): the data is noise, for testing only",
    "shape": "random weights in the production architecture: the data is noise, for benchmarks only",
    "template": "no model: descriptions written from templates",
}
"""Licenses of the models the profiles use, as their model cards state them. Other references are
listed as "see the model's card"."""


def model_license(ref: str) -> str:
    if ref in MODEL_LICENSES:
        return MODEL_LICENSES[ref]
    if ref.startswith("shape:"):
        return MODEL_LICENSES["shape"]
    if ref.startswith(("/", "./", "~")):
        return "a local checkpoint: see its own license"
    return "see the model's card"


def yaml_features(features: dict[str, Any]) -> list[dict[str, Any]]:
    """``hf_features`` output in the dataset card's YAML form (what ``datasets`` writes into ``dataset_info``)."""

    def entry(name: str | None, feature: dict[str, Any]) -> dict[str, Any]:
        head = {} if name is None else {"name": name}
        kind = feature.get("_type")
        if kind is None:
            return {**head, "struct": [entry(k, v) for k, v in feature.items()]}
        if kind == "Value":
            return {**head, "dtype": feature["dtype"]}
        if kind == "Image":
            return {**head, "dtype": "image"}
        inner = entry(None, feature["feature"])  # a List
        return {**head, "list": inner.get("struct", inner.get("dtype", inner))}

    return [entry(name, feature) for name, feature in features.items()]


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return label
    return "n>1M"


def dataset_card(summary: dict[str, Any], provenance: dict[str, Any], rejects: int) -> str:
    """The card of a finished build: ``summary`` as ``summary.json`` holds it, ``provenance`` as its shards
    carry it (config hash, fingerprint, models, stage versions), ``rejects`` the rows of ``rejects/``."""
    sets = summary["sets"]
    header = {
        "pretty_name": "S3: same-subject image sets",
        "license": "other",
        "license_name": "per generating model (see Licenses)",
        "task_categories": ["text-to-image"],
        "tags": ["synthetic", "personalization", "subject-driven-generation", "s3jedi"],
        "size_categories": [_size_category(sets)],
        "configs": [
            {"config_name": "default", "data_files": [{"split": "train", "path": f"{SETS_DIR}/*.parquet"}]},
            {"config_name": "rejects", "data_files": [{"split": "train", "path": f"{REJECTS_DIR}/*.parquet"}]},
        ],
        "dataset_info": [
            {"config_name": "default", "features": yaml_features(hf_features(SETS_FIELDS))},
            {"config_name": "rejects", "features": yaml_features(hf_features(REJECTS_FIELDS))},
        ],
    }
    models = provenance.get("models", {})
    stage_rows = [
        [name, st["entered"], st["passed"], st["rejected"], st.get("items_dropped", 0), st["errors"]]
        for name, st in summary.get("stages", {}).items()
    ]
    reason_rows = [
        [stage, reason, count]
        for stage, reasons in summary.get("rejects_by_reason", {}).items()
        for reason, count in reasons.items()
    ]
    acceptance = summary.get("acceptance_rate")
    accepted = "-" if acceptance is None else f"{acceptance:.0%}"
    images, requested = summary["images"], summary.get("subjects_requested", 0)
    fields = _table(
        ["field", "what"],
        [
            ["set_id", "stable id of the set (the subject id)"],
            ["category", "the object category"],
            ["subject", "the description the LLM wrote"],
            ["seed", "the subject's seed; every stage derives its own from it"],
            ["collage_prompt", "the prompt of the collages the instances were cut from"],
            ["consistency", "mean pairwise CLIP similarity of the set's instances"],
            ["style", "the InstructPix2Pix instruction applied to the whole set, or null"],
            [
                "images",
                "per image: `image` (RGB PNG), `mask` (1-bit PNG, white = the subject), `prompt` (its caption), "
                "`seed`, `width`, `height`",
            ],
        ],
    )
    stages = _table(["stage", "entered", "passed", "rejected", "dropped items", "errors"], stage_rows)
    reasons = _table(["stage", "reject reason", "count"], reason_rows) if reason_rows else "No rejects."
    licenses = _table(
        ["role", "model", "license"], [[role, f"`{ref}`", model_license(ref)] for role, ref in models.items()]
    )
    provenance_table = _table(
        ["", ""],
        [
            ["profile", summary.get("profile", "")],
            ["config hash", f"`{provenance.get('config_hash', '')}`"],
            ["data fingerprint", f"`{provenance.get('fingerprint', '')}`"],
            ["stage versions", ", ".join(f"{k} {v}" for k, v in provenance.get("stage_versions", {}).items())],
        ],
    )
    body = f"""# S3: same-subject image sets

Sets of images of one subject each: the same object in different scenes, some stylized, every image with
the subject's mask and a caption. Made by the S3 builder of s3jedi (`s3jedi datagen`): an LLM describes
subjects, a text-to-image model draws collages of each, a detector and a segmenter cut out the instances,
CLIP keeps the sets whose instances agree, inpainting puts each instance in a new scene, and
InstructPix2Pix restyles some sets.

## Loading

```python
from datasets import load_dataset

sets = load_dataset("path/to/this/directory", split="train")  # images and masks decode to PIL images
rejects = load_dataset("path/to/this/directory", "rejects", split="train")
```

or, with s3jedi: `core.s3.iter_sets(root)` (decoded sets), `core.s3.read_training_sets(root)` (Ray Data).

## Fields

{fields}

Format: Parquet, schema `s3-sets` version {SCHEMA_VERSION}; the `rejects` config lists every dropped subject
or image with its stage, reason and the numbers behind it.

## Counts

{sets} sets, {images} images from {requested} subjects requested
(acceptance {accepted}), {rejects} rejects.

{stages}

{reasons}

## Licenses

The data was generated by these models; its use is subject to their licenses (the CreativeML Open
RAIL++-M licenses restrict how the models and their outputs may be used).

{licenses}

## Provenance

{provenance_table}

`s3jedi-config.yaml` beside this card is the resolved configuration of the build; `summary.json` has the
per-stage timings. Rerunning `s3jedi datagen --out <this directory>` with that configuration resumes or
verifies the build.
"""
    return "---\n" + yaml.safe_dump(header, sort_keys=False, allow_unicode=True) + "---\n\n" + body
