"""The DreamBooth benchmark run (``s3jedi eval``): which methods, which protocols, what to generate,
how to score it, how to run it.

A run compares ``methods`` (JeDi, the base model, and any fine-tuning method of the registry, which the
run fine-tunes on each subject's photos or finds in a subject store) on one or more named
``protocols``, each the evaluation of one paper's comparison table (``PROTOCOLS``). Defaults are the
tiny profile: 2 prompts × 2 samples per subject at 64 px with 2 denoising steps, so a run finishes in
well under a minute on a CPU. ``configs/sd14.yaml`` lifts the caps (every protocol's own prompt and
sample counts), sets 512 px, 50 steps and the published scoring backbones.

The generation and scoring sub-sections (plus the models they load, the fine-tuning settings of the
methods trained in the run, and the root seed) decide what a per-image score *means*; a run
directory refuses to be resumed with different values there. The selection, the methods, the
protocols, compute and report may change between resumes (more subjects, another method, more actors).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from core.config.base import Section
from core.config.jedi import JeDiSampling


class Protocol(Section):
    """One paper's evaluation: which prompts, how many images each, which scores its table reports."""

    label: str
    source: str = Field(..., description="the paper and table whose numbers the protocol reproduces")
    prompts: Literal["benchmark", "simple"] = Field(
        ..., description="the subject's benchmark prompt list, or the one simple prompt (simple_prompt)"
    )
    samples: int = Field(..., ge=1, description="images per prompt in the paper")
    metrics: list[str] = Field(..., min_length=1, description="the table's columns, in the paper's order")
    labels: dict[str, str] = Field(default_factory=dict, description="the paper's name of a metric, where it differs")
    identity_excluded: list[str] = Field(
        default_factory=list,
        description="regular expressions: prompt templates matching one are left out of the identity scores",
    )


PROTOCOLS = {
    "dreambooth": Protocol(
        label="DreamBooth, 25 diverse prompts",
        source="paper 002 (JeDi) §4 and Table 2; paper 001's 'diverse prompt' protocol",
        prompts="benchmark",
        samples=4,
        metrics=["clip_t", "clip_i", "mclip_i", "dino", "mdino"],
    ),
    "simple": Protocol(
        label="simple prompt",
        source="paper 001 §4.3.1 and Table 1 ('simple prompt', after Textual Inversion): 64 images of one prompt",
        prompts="simple",
        samples=64,
        metrics=["clip_i", "dino"],
    ),
    "core": Protocol(
        label="masked identity, appearance-changing prompts excluded",
        source="paper 003 (CoRe) §4 Evaluation Setup and Table 1: CLIP-I and DINO on foreground-masked images, "
        "stylization and outfit prompts left out of them; 32 images per prompt",
        prompts="benchmark",
        samples=32,
        metrics=["clip_t", "mclip_i", "mdino"],
        identity_excluded=[r"\bwearing\b", r"\boutfit\b", r"^a (red|purple|shiny|wet|cube shaped) \{0\}"],
    ),
    "selfdistill": Protocol(
        label="CLIP-MI, NegCLIP-T and conflict rate",
        source="paper 000 §4.1 and Table 1: 50 images per prompt (1,250 per subject)",
        prompts="benchmark",
        samples=50,
        metrics=["mclip_i", "negclip_t", "conflict_rate"],
        labels={"mclip_i": "CLIP-MI"},
    ),
}
"""The named protocols. The DreamBooth material's appearance-changing prompts are outfits and
accessories ("wearing ...", "... outfit") and the recolouring and reshaping ones ("a red {0} {1}",
"a cube shaped {0} {1}"): paper 003's stylization and outfit prompts, on this benchmark's list."""
NEEDS_NEGCLIP = {"negclip_t", "conflict_rate"}


class SelectionConfig(Section):
    subjects: list[str] | None = Field(
        None, description="subjects of subjects.json to evaluate; None = every subject with photos in images/"
    )
    prompts: int | None = Field(
        2, ge=1, le=1000, description="first N prompts of each subject's list (object or live); None = all (25)"
    )
    samples: int | None = Field(
        2,
        ge=1,
        le=10_000,
        description="images per prompt, at most; None = each protocol's own count (DreamBooth 4, simple 64, "
        "CoRe 32, self-distillation 50); sample j uses seed seed+j",
    )
    simple_prompt: str = Field(
        "a photo of a {0} {1}", description="template of the simple protocol ({0} token, {1} class)"
    )
    skip_bad_photos: bool = Field(
        False, description="leave unreadable benchmark photos out (listed in the report) instead of stopping"
    )


class GenerationConfig(JeDiSampling):
    """How every method draws: the same steps, guidance, size and seeds, so the methods differ only in
    what they learned (JeDi's image guidance and references apply to JeDi alone)."""

    references: int = Field(3, ge=1, le=16, description="k: reference photos given to JeDi (the first k, sorted)")
    steps: int = Field(2, ge=1, le=1000, description="denoising steps")
    guidance_scale: float = Field(
        3.0, ge=0.0, le=50.0, description="text guidance scale of the other methods and of JeDi's decomposed guidance"
    )
    resolution: int = Field(64, ge=8, le=2048, description="square output side in pixels (multiple of 8)")
    dtype: Literal["float32", "float16", "bfloat16"] = Field(
        "float32", description="generator precision (float16 on GPUs; CPU needs float32)"
    )

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


class ConflictSection(Section):
    """Paper 000 §4.1's conflict rate: the share of images whose identity score (CLIP-MI) or text score
    (NegCLIP-T) is below its minimum. The paper gives no values; these are this project's
    (docs/decisions.md), shared by the evaluation and self-distillation's gold filter."""

    min_identity: float = Field(0.7, ge=-1.0, le=1.0, description="minimum identity score (CLIP-MI)")
    min_text: float = Field(0.25, ge=-1.0, le=1.0, description="minimum text score (NegCLIP-T)")


class FinetunedConfig(Section):
    """Where the fine-tuned methods' subjects come from."""

    store: str | None = Field(
        None,
        description="reuse the subjects already published in this subject store (found by subject_id) instead "
        "of fine-tuning them in the run; None = fine-tune each subject with each method into the run directory",
    )
    subject_id: str = Field(
        "{subject}-{method}",
        description="store: the id of each benchmark subject's subject ({subject} = its folder name, {method})",
    )

    @field_validator("subject_id")
    @classmethod
    def _subject_slot(cls, value: str) -> str:
        if "{subject}" not in value:
            raise ValueError(f"{value!r} must contain {{subject}}")
        return value


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
    methods: list[str] = Field(
        default_factory=lambda: ["jedi"],
        min_length=1,
        description="methods compared: jedi, base (the floor) and fine-tuning methods of the registry "
        "(dreambooth, ti, two-stage, core, selfdistill, or a plugin's)",
    )
    reference: str | None = Field(
        None, description="the method the others are compared with, pair by pair; None = the first of methods"
    )
    protocols: list[Literal["dreambooth", "simple", "core", "selfdistill"]] = Field(
        default_factory=lambda: ["dreambooth"], min_length=1, description="named protocols (PROTOCOLS) to report"
    )
    finetuned: FinetunedConfig = Field(default_factory=FinetunedConfig)
    conflict: ConflictSection = Field(default_factory=ConflictSection)
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    scoring: ScoringConfig = Field(default_factory=ScoringConfig)
    compute: ComputeConfig = Field(default_factory=ComputeConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)

    @field_validator("methods")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"{value}: a method is named twice")
        return value

    @model_validator(mode="after")
    def _check(self) -> EvaluationConfig:
        if self.reference is not None and self.reference not in self.methods:
            raise ValueError(f"reference: {self.reference!r} is not one of the methods ({', '.join(self.methods)})")
        return self

    @property
    def reference_method(self) -> str:
        return self.reference or self.methods[0]
