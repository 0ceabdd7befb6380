"""The DreamBooth benchmark run (``s3jedi eval``): what to generate, how to score it, how to run it.

Defaults are the tiny profile: 2 prompts × 2 samples per subject at 64 px with 2 denoising steps, so
a run finishes in well under a minute on a CPU. ``configs/sd14.yaml`` sets the paper protocol
(all 25 prompts, 4 samples, 512 px, 50 steps) and the published scoring backbones.

The generation and scoring sub-sections (plus the models they load and the root seed) decide what a
per-image score *means*; a run directory refuses to be resumed with different values there. The
selection, compute and report sub-sections may change between resumes (more subjects, more actors).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from core.config.base import Section
from core.config.jedi import JeDiSampling


class SelectionConfig(Section):
    subjects: list[str] | None = Field(
        None, description="subjects of subjects.json to evaluate; None = every subject with photos in images/"
    )
    prompts: int | None = Field(
        2, ge=1, le=1000, description="first N prompts of each subject's list (object or live); None = all (25)"
    )
    samples: int = Field(2, ge=1, le=10_000, description="images per prompt (paper protocol: 4), seeds seed..seed+N-1")
    simple_prompt: str = Field(
        "a photo of a {0} {1}", description="template of the extra 'simple' protocol ({0} token, {1} class)"
    )
    simple_samples: int = Field(
        0, ge=0, le=10_000, description="images of the simple prompt per subject (paper: 64); 0 = off"
    )
    skip_bad_photos: bool = Field(
        False, description="leave unreadable benchmark photos out (listed in the report) instead of stopping"
    )


class GenerationConfig(JeDiSampling):
    method: Literal["jedi", "base", "finetuned"] = Field(
        "jedi",
        description="generator: jedi (models.jedi + k reference photos), base (models.sd, the floor) or finetuned "
        "(each subject's fine-tuned subject from the subject store)",
    )
    subject_id: str = Field(
        "{subject}-dreambooth",
        description="finetuned: the store id of each benchmark subject ({subject} = its folder name)",
    )
    references: int = Field(3, ge=1, le=16, description="k: reference photos given to JeDi (the first k, sorted)")
    steps: int = Field(2, ge=1, le=1000, description="denoising steps")
    guidance_scale: float = Field(
        3.0, ge=0.0, le=50.0, description="text guidance scale of the base model and of JeDi's decomposed guidance"
    )
    resolution: int = Field(64, ge=8, le=2048, description="square output side in pixels (multiple of 8)")
    dtype: Literal["float32", "float16", "bfloat16"] = Field(
        "float32", description="generator precision (float16 on GPUs; CPU needs float32)"
    )

    @field_validator("subject_id")
    @classmethod
    def _subject_slot(cls, value: str) -> str:
        if "{subject}" not in value:
            raise ValueError(f"{value!r} must contain {{subject}}")
        return value

    @field_validator("resolution")
    @classmethod
    def _multiple_of_8(cls, value: int) -> int:
        if value % 8:
            raise ValueError(f"must be a multiple of 8 (the VAE downsamples 8×), got {value}")
        return value


class ScoringConfig(Section):
    clip: str | None = Field(
        None, description="primary CLIP for CLIP-T/CLIP-I (None = models.clip); production: ViT-B/32"
    )
    clip_secondary: str | None = Field(
        None, description="second CLIP reported beside the primary (ViT-L/14); None = off"
    )
    dino: str | None = Field(None, description="DINO for DINO/MDINO (None = models.dino); production: ViT-S/16")
    negclip: bool = Field(False, description="also score NegCLIP-T with models.negclip (paper 000's text score)")
    masked: bool = Field(True, description="compute MCLIP-I/MDINO (detector + segmenter cut out the subject)")
    box_threshold: float = Field(0.0, ge=0.0, le=1.0, description="detector box threshold for subject masks")
    text_threshold: float = Field(0.0, ge=0.0, le=1.0, description="detector text threshold for subject masks")
    max_instances: int = Field(1, ge=1, le=16, description="best detections whose masks form the subject")


class ComputeConfig(Section):
    generation_actors: int = Field(1, ge=1, le=1024, description="generation actor pool size")
    scoring_actors: int = Field(1, ge=1, le=1024, description="scoring actor pool size")
    generation_batch: int = Field(4, ge=1, le=4096, description="images per generation call")
    scoring_batch: int = Field(4, ge=1, le=4096, description="images per scoring call (one Parquet part each)")
    encoder_batch: int = Field(32, ge=1, le=4096, description="images per CLIP/DINO forward pass")
    gpus_per_generator: float = Field(0.0, ge=0.0, le=8.0, description="GPUs per generation actor (0 = CPU)")
    gpus_per_scorer: float = Field(0.0, ge=0.0, le=8.0, description="GPUs per scoring actor (0 = CPU)")
    cpus_per_actor: float = Field(1.0, gt=0.0, le=256.0, description="CPUs reserved per actor")


class ReportConfig(Section):
    bootstrap: int = Field(1000, ge=10, le=1_000_000, description="bootstrap resamples for the confidence intervals")
    confidence: float = Field(0.95, gt=0.0, lt=1.0, description="confidence level of the intervals")
    thumbnail: int = Field(128, ge=16, le=1024, description="side of an image in the grids, pixels")


class EvaluationConfig(Section):
    benchmark: Path | None = Field(
        None, description="DreamBooth-layout folder (subjects.json, prompts.json, images/); None = ../shared/dreambooth"
    )
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    scoring: ScoringConfig = Field(default_factory=ScoringConfig)
    compute: ComputeConfig = Field(default_factory=ComputeConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
