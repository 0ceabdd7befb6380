"""Test-wide settings: offline hub, no Ray usage reporting, and one zoo home shared by the session.

The tiny zoo is built once into ``.cache/test-home`` (or ``$S3JEDI_TEST_HOME``) and reused across
runs; ``core.zoo.build`` verifies checksums, so a stale or half-written model is rebuilt, never used.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["S3JEDI_HOME"] = os.environ.get("S3JEDI_TEST_HOME", str(REPO / ".cache" / "test-home"))


@pytest.fixture(scope="session")
def zoo_home() -> Path:
    """The session's zoo home with every tiny family built."""
    from core import zoo

    zoo.build("tiny")
    return Path(os.environ["S3JEDI_HOME"])


@pytest.fixture(scope="session")
def dreambooth() -> Path:
    path = SHARED / "dreambooth"
    assert path.is_dir(), f"the shared DreamBooth material is missing at {path}"
    return path


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray shared by every test of the session that needs it (start-up costs seconds)."""
    import ray

    from core.config.runtime import RayConfig
    from core.ray_runtime import init_ray

    os.environ.pop("RAY_ADDRESS", None)
    init_ray(RayConfig(num_cpus=2))
    yield ray
    ray.shutdown()
