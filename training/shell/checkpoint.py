"""Checkpoint directories: weights as safetensors, optimizer-like state restricted to tensors, JSON meta.

A checkpoint is a plain directory ``<run dir>/checkpoint-NNNNNNN`` that Ray Train persists
(``ray.train.report(..., checkpoint=...)``) and hands back through ``ray.train.get_checkpoint()``
after a failure or a rerun with the same run name. Every worker may add its own files (Ray merges the
workers' directories), which is how each data-parallel rank stores its own data position.

``meta.json`` lists rank 0's files with their sizes (``files``). A worker killed right after writing a
checkpoint leaves it on storage before Ray Train has recorded it; ``restore_point`` therefore also
looks at the checkpoints on storage and takes the newest *complete* one (every listed file present
at its size), so a restart never falls back further than the last checkpoint written whole.

Nothing here unpickles arbitrary objects: weights are safetensors and optimizer/scheduler state goes
through ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow.fs as pafs
import torch

from core import storage
from core.zoo.safety import load_state_dict, save_state_dict

META = "meta"
NAME_RE = re.compile(r"^checkpoint-(\d{7})$")


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


def name(step: int) -> str:
    return f"checkpoint-{step:07d}"


def write_meta(directory: Path, meta: dict) -> None:
    """``meta.json``, written last: with the size of every other file in ``directory``."""
    files = {p.name: p.stat().st_size for p in sorted(directory.iterdir()) if p.is_file()}
    write_json(directory, META, {**meta, "files": files})


def _read_remote_json(fs: pafs.FileSystem, path: str) -> dict | None:
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(path) as f:
        try:
            return json.loads(f.read())
        except json.JSONDecodeError:  # cut short by the kill
            return None


def _complete(fs: pafs.FileSystem, path: str, meta: dict | None) -> bool:
    if meta is None or "files" not in meta:
        return False
    infos = {i.base_name: i for i in fs.get_file_info(pafs.FileSelector(path))}
    return all(n in infos and infos[n].size == size for n, size in meta["files"].items())


def on_storage(run_dir: str, complete_only: bool = True) -> tuple[str, dict] | None:
    """The newest checkpoint under ``run_dir`` (local path or URI) and its meta: complete ones only, or
    (``complete_only=False``) any with a readable meta, which is what records the run's settings."""
    fs, root = storage.filesystem(run_dir)
    if fs.get_file_info(root).type != pafs.FileType.Directory:
        return None
    dirs = [i for i in fs.get_file_info(pafs.FileSelector(root)) if i.type == pafs.FileType.Directory]
    for info in sorted((i for i in dirs if NAME_RE.match(i.base_name)), key=lambda i: i.base_name, reverse=True):
        meta = _read_remote_json(fs, f"{info.path}/{META}.json")
        if meta is not None and (not complete_only or _complete(fs, info.path, meta)):
            return storage.join(run_dir, info.base_name), meta
    return None


def step_of(path: str) -> int:
    match = NAME_RE.match(path.rstrip("/").rsplit("/", 1)[-1])
    return int(match.group(1)) if match else -1


@contextmanager
def restore_point(run_dir: str) -> Iterator[Path | None]:
    """The checkpoint to continue from, as a local directory: the one Ray Train restored for this run
    (after a failure or a rerun) or a newer complete one on storage that Ray has not recorded."""
    import ray.train

    restored = ray.train.get_checkpoint()
    newest = on_storage(run_dir)
    if newest is not None and (restored is None or step_of(newest[0]) > step_of(restored.path)):
        fs, path = storage.filesystem(newest[0])
        restored = ray.train.Checkpoint(path, filesystem=fs)
    if restored is None:
        yield None
        return
    with restored.as_directory() as d:
        yield Path(d)
