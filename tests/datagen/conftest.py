"""Shared builds for the datagen tests: one uninterrupted reference build per session.

The reference is the tiny profile with separate actor pools per stage (the default), 3 categories × 2
subjects in 3 shards of 2. Other tests compare against it (a resumed build must reproduce it exactly)
or run the faster fused execution, which must give identical sets.
"""

from __future__ import annotations

import pytest

from core.config import S3JediConfig, load_config

TINY = ("datagen.progress=false", "datagen.subjects.subjects_per_category=2")


def tiny_config(*overrides: str) -> S3JediConfig:
    return load_config("tiny", [*TINY, *overrides])


@pytest.fixture(scope="session")
def reference_build(ray_local, zoo_home, tmp_path_factory):
    from datagen.pipeline import build

    return build(tiny_config(), str(tmp_path_factory.mktemp("s3-reference")))
