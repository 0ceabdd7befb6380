"""The JeDi sampling settings every sampler of the project shares (evaluation, serving, ToyWorld).

A mixin section: each sampler's own section inherits these fields, so the YAML stays flat
(``evaluation.generation.image_guidance_scale``) and every front end has the same names, defaults and
validation as ``JeDiPipeline`` (``core.jedi.guidance``).
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import Field

from core.config.base import Section
from core.jedi.guidance import DEFAULT_GUIDANCE, DEFAULT_IMAGE_GUIDANCE_SCALE, DEFAULT_JOINT_TARGETS, GUIDANCE_MODES

GuidanceMode = Literal[GUIDANCE_MODES]


class JeDiSampling(Section):
    guidance: GuidanceMode = Field(
        DEFAULT_GUIDANCE,
        description="JeDi guidance: paper (Eq. 3, one scale λ), paper-unknown (Eq. 3, references marked unknown "
        "in ε⁰), decomposed (project variant: λ and a separate text scale)",
    )
    image_guidance_scale: float = Field(
        DEFAULT_IMAGE_GUIDANCE_SCALE, ge=0.0, le=100.0, description="JeDi image guidance λ (1 = off)"
    )
    joint_targets: bool = Field(
        DEFAULT_JOINT_TARGETS,
        description="draw the images of one reference set as members of shared sets (up to max_set_size - K each)",
    )


def sampling_overrides(section: str, guidance: str | None, image_guidance: float | None, joint_targets: bool | None):
    """``--set`` overrides of a sampler section for the CLI options a user gave (``None``: left to the
    config), so a bad value fails config validation with the field's name like any other setting."""
    given = {"guidance": guidance, "image_guidance_scale": image_guidance, "joint_targets": joint_targets}
    return [f"{section}.{k}={json.dumps(v)}" for k, v in given.items() if v is not None]
