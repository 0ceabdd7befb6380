"""Typed configuration: pydantic models per section, YAML profiles in ``configs/``, CLI overrides."""

from core.config.loader import (
    ConfigError,
    apply_override,
    config_hash,
    load_config,
    profile_path,
    save_config,
    to_yaml,
    validate,
)
from core.config.root import S3JediConfig

__all__ = [
    "ConfigError",
    "S3JediConfig",
    "apply_override",
    "config_hash",
    "load_config",
    "profile_path",
    "save_config",
    "to_yaml",
    "validate",
]
