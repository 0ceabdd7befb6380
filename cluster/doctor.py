"""``s3jedi doctor``: what this machine has, and whether the configured models can be loaded."""

from __future__ import annotations

import importlib.metadata as md
import platform
from pathlib import Path

from core.config import S3JediConfig
from core.paths import s3jedi_home, zoo_dir
from core.ray_runtime import ray_address_summary
from core.zoo import ModelNotFoundError, all_families, resolve
from core.zoo.build import is_built

PACKAGES = (
    "torch",
    "torchvision",
    "ray",
    "diffusers",
    "transformers",
    "open_clip_torch",
    "segment-anything",
    "groundingdino-py",
    "pyarrow",
    "vllm",
)


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in PACKAGES:
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def accelerators() -> dict[str, str]:
    import torch

    info = {"cuda build": str(torch.version.cuda), "cuda available": str(torch.cuda.is_available())}
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            info[f"gpu {i}"] = f"{p.name}, {p.total_memory / 2**30:.0f} GiB"
    return info


def hub_cached(repo_id: str) -> bool:
    from huggingface_hub import scan_cache_dir

    try:
        return any(r.repo_id == repo_id for r in scan_cache_dir().repos)
    except Exception:
        return False


def model_status(cfg: S3JediConfig) -> dict[str, str]:
    """Per family: the configured reference and whether it is present here."""
    out = {}
    for family, ref in cfg.models.model_dump().items():
        try:
            source = resolve(family, ref, cfg.home)
        except ModelNotFoundError as exc:
            out[family] = f"{ref}: MISSING - {exc}"
            continue
        if Path(source).exists():
            out[family] = f"{ref}: ok ({source})"
        else:
            repo = source.removeprefix("hf-hub:")
            state = "in the Hugging Face cache" if hub_cached(repo) else "not cached (needs the hub)"
            out[family] = f"{ref}: {state}"
    return out


def report(cfg: S3JediConfig) -> dict[str, dict[str, str]]:
    home = cfg.home or s3jedi_home()
    tiny = zoo_dir("tiny", cfg.home)
    return {
        "versions": versions(),
        "accelerators": accelerators(),
        "ray": {"address": ray_address_summary()},
        "zoo": {
            "home": str(home),
            "tiny built": f"{sum(is_built(f, tiny) for f in all_families())}/{len(all_families())}",
        },
        f"models ({cfg.profile})": model_status(cfg),
    }
