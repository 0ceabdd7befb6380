"""Where the parts of an S3 dataset live under its root (a local directory or a URI)."""

from __future__ import annotations

from core import storage

SETS_DIR = "sets"
REJECTS_DIR = "rejects"
SUMMARY_FILE = "summary.json"


def sets_path(root: str) -> str:
    """The Parquet files of the sets: ``<root>/sets`` when ``root`` is a dataset root, else ``root`` itself
    (a directory of shards or one shard file)."""
    candidate = storage.join(root, SETS_DIR)
    return candidate if storage.exists(candidate) else storage.resolve(root)


def rejects_path(root: str) -> str:
    return storage.join(root, REJECTS_DIR)


def summary_path(root: str) -> str:
    return storage.join(root, SUMMARY_FILE)
