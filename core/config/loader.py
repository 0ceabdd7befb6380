"""Loading a config: YAML profile → ``--set`` overrides → validation, with one-line errors.

A wrong key or type must stop a job at start-up on the user's machine, not deep inside a Ray worker
an hour later, and the message must name the dotted field and what was expected.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from core.config.root import S3JediConfig
from core.paths import REPO_ROOT

PROFILES_DIR = REPO_ROOT / "configs"
SAVED_NAME = "s3jedi-config.yaml"


class ConfigError(ValueError):
    """A config that cannot be used; ``str()`` is one line meant for the user."""


def profile_path(name_or_path: str | Path) -> Path:
    """``tiny`` → ``configs/tiny.yaml``; anything with a suffix or a slash is a path."""
    text = str(name_or_path)
    if text.endswith((".yaml", ".yml")) or "/" in text:
        path = Path(text).expanduser()
    else:
        path = PROFILES_DIR / f"{text}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PROFILES_DIR.glob("*.yaml")))
        raise ConfigError(f"config: no such file {path} (built-in profiles: {known})")
    return path


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply ``dotted.key=value`` to ``data``; the value is parsed as YAML (``64``, ``[a, b]``, ``null``)."""
    key, sep, raw = assignment.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {assignment!r}: expected dotted.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {key}: value {raw!r} is not valid YAML ({exc.problem})") from None
    node = data
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {key}: {'.'.join(parts[: i + 1])} is a value, not a section")
        node = child
    node[parts[-1]] = value


def _describe(error: dict) -> str:
    where = ".".join(str(p) for p in error["loc"]) or "(root)"
    msg = error["msg"]
    if error["type"] == "extra_forbidden":
        msg = "unknown field"
    elif "input" in error and not isinstance(error["input"], dict):
        msg = f"{msg} (got {error['input']!r})"
    return f"{where}: {msg}"


def _override_of(loc: tuple, overrides: list[str] | tuple[str, ...]) -> str | None:
    """The last ``--set`` whose key and the error's location overlap (``datagen.foo=1`` for an error
    at ``datagen.foo``, ``train.jedi.data.sources=[...]`` for one at ``train.jedi.data.sources.0.kind``,
    ``datagen.instances.max_detections=2`` for a check of the whole ``datagen.instances``)."""
    where = [str(p) for p in loc]
    for assignment in reversed(overrides):
        key = assignment.partition("=")[0].strip().split(".")
        n = min(len(key), len(where))
        if where and where[:n] == key[:n]:
            return assignment
    return None


def validate(data: dict[str, Any], source: str = "config", overrides: list[str] | tuple[str, ...] = ()) -> S3JediConfig:
    """The validated config; the error names its source: the ``--set`` that caused it, else ``source``."""
    try:
        return S3JediConfig.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        first = _describe(errors[0])
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        override = _override_of(errors[0]["loc"], overrides)
        raise ConfigError(f"{f'--set {override}' if override else source}: {first}{more}") from None


def load_config(profile: str | Path = "tiny", overrides: list[str] | tuple[str, ...] = ()) -> S3JediConfig:
    path = profile_path(profile)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    for assignment in overrides:
        apply_override(data, assignment)
    return validate(data, source=str(path), overrides=overrides)


def to_yaml(config: S3JediConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def config_hash(config: S3JediConfig) -> str:
    """A short, stable digest of the resolved config, recorded as provenance of every output."""
    canonical = json.dumps(config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def save_config(config: S3JediConfig, out_dir: Path) -> Path:
    """Write the resolved config next to an output, so the output says how it was made."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / SAVED_NAME
    path.write_text(f"# config hash {config_hash(config)}\n" + to_yaml(config))
    return path
