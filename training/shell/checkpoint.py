"""Checkpoint directories: weights as safetensors, optimizer-like state restricted to tensors, JSON meta.

A checkpoint is a plain directory that Ray Train persists (``ray.train.report(..., checkpoint=...)``)
and hands back through ``ray.train.get_checkpoint()`` after a failure or a rerun with the same run
name. Every worker may add its own files (Ray merges the workers' directories), which is how each
data-parallel rank stores its own data position.

Nothing here unpickles arbitrary objects: weights are safetensors and optimizer/scheduler state goes
through ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from core.zoo.safety import load_state_dict, save_state_dict


def write_weights(directory: Path, name: str, tensors: dict[str, torch.Tensor]) -> None:
    save_state_dict(tensors, directory / f"{name}.safetensors")


def read_weights(directory: Path, name: str) -> dict[str, torch.Tensor] | None:
    path = directory / f"{name}.safetensors"
    return load_state_dict(path) if path.exists() else None


def write_state(directory: Path, name: str, state: dict) -> None:
    torch.save(state, directory / f"{name}.pt")


def read_state(directory: Path, name: str) -> dict | None:
    path = directory / f"{name}.pt"
    return torch.load(path, map_location="cpu", weights_only=True) if path.exists() else None


def write_json(directory: Path, name: str, data: dict) -> None:
    (directory / f"{name}.json").write_text(json.dumps(data, indent=1, sort_keys=True))


def read_json(directory: Path, name: str) -> dict | None:
    path = directory / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


@contextmanager
def staging_dir() -> Iterator[Path]:
    """A temporary local directory to assemble a checkpoint in before Ray persists it."""
    path = Path(tempfile.mkdtemp(prefix="s3jedi-ckpt-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def latest_checkpoint() -> Iterator[Path | None]:
    """The checkpoint Ray Train restored for this run (after a failure or a rerun), as a local dir."""
    import ray.train

    ckpt = ray.train.get_checkpoint()
    if ckpt is None:
        yield None
        return
    with ckpt.as_directory() as d:
        yield Path(d)
