"""A stage added to the builder from this test alone: declared and registered here, nothing else edited.

The declaration (``datagen.stage.Stage``) is all the builder needs: the stage gets its config section
(``datagen.passthrough``), its place in the pipeline, its own Ray actor class, its rows in the summary
and its version in every shard's provenance and in the dataset card.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field

from core.config import ConfigError, load_config
from core.config.base import Section
from core.config.datagen import StageResources
from core.s3 import iter_sets
from datagen import stages
from datagen.pipeline import build
from datagen.ray_stages import StageActor, actor_class
from datagen.rows import WorkRow, from_table, to_table
from datagen.stage import Stage
from tests.datagen.conftest import tiny_config


class PassThroughSection(Section):
    expect: str = "nothing"
    resources: StageResources = Field(default_factory=StageResources)


def load(cfg, device):
    expected = cfg.datagen.passthrough.expect

    def passthrough(row):
        if expected != "set by the test":  # the worker got the driver's config
            raise RuntimeError(f"datagen.passthrough.expect is {expected!r}")
        return row

    return passthrough


PASSTHROUGH = Stage("passthrough", version="7", families=(), section=PassThroughSection, load=load)


@pytest.fixture
def passthrough_stage():
    stages.register(PASSTHROUGH, after="backgrounds")
    yield PASSTHROUGH
    stages.unregister("passthrough")


def test_registration_places_the_stage_and_validates_its_section(passthrough_stage):
    assert stages.names() == (
        "subjects",
        "collages",
        "instances",
        "consistency",
        "backgrounds",
        "passthrough",
        "stylize",
    )
    assert tiny_config().datagen.passthrough.expect == "nothing"
    with pytest.raises(ConfigError, match="datagen.passthrough.unknown: unknown field"):
        tiny_config("datagen.passthrough.unknown=1")
    with pytest.raises(ValueError, match="exists already"):
        stages.register(PASSTHROUGH, after="collages")
    with pytest.raises(ValueError, match="after='nowhere'"):
        stages.register(Stage("other", "1", (), PassThroughSection, load), after="nowhere")


def test_without_registration_the_section_is_unknown():
    assert "passthrough" not in stages.names()
    with pytest.raises(ConfigError, match="datagen.passthrough: unknown field"):
        tiny_config("datagen.passthrough.expect=x")


def test_the_added_stage_gets_its_own_actor_class(passthrough_stage):
    """What ``execution: pools`` runs it in (the reference build runs the built-in stages' classes)."""
    cls = actor_class(PASSTHROUGH)
    assert cls.__name__ == "Passthrough" and issubclass(cls, StageActor)
    actor = cls(tiny_config("datagen.passthrough.expect=set by the test"))
    (row,) = from_table(actor(to_table([WorkRow("mug-000", 0, "mug", "a mug", ["on a desk"], 1)])))
    assert [(t.stage, t.outcome) for t in row.trace] == [("passthrough", "passed")]


def test_a_build_runs_the_added_stage(passthrough_stage, reference_build, tmp_path):
    """In a Ray worker, with the driver's config (fused execution and one subject per category, half the
    reference build's subjects, so the test stays short)."""
    cfg = load_config(
        "tiny", ["datagen.progress=false", "datagen.execution=fused", "datagen.passthrough.expect=set by the test"]
    )
    result = build(cfg, str(tmp_path))
    summary = result.summary
    st = summary["stages"]["passthrough"]
    assert st["entered"] == summary["stages"]["backgrounds"]["passed"] == st["passed"] > 0 and st["errors"] == 0
    assert summary["stages"]["stylize"]["entered"] == st["passed"]
    want = {s.set_id: [im.tobytes() for im in s.images] for s in iter_sets(reference_build.root)}
    got = {s.set_id: [im.tobytes() for im in s.images] for s in iter_sets(str(tmp_path))}
    assert got and got == {k: want[k] for k in got}, "a pass-through stage leaves the data as it was"
    for s in iter_sets(str(tmp_path)):
        assert s.provenance["stage_versions"]["passthrough"] == "7"
    assert "passthrough 7" in (Path(tmp_path) / "README.md").read_text()
