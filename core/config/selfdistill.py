"""Filtered self-distillation (``selfdistill.*``, paper 000): teacher → mining → gold filter → student.

The teacher is DreamBooth with ``finetune.dreambooth``'s settings except what the paper fixes here
(all UNet weights trained, §3.1; the "a [V] [class noun]" prompt), or an already published subject;
the student is the same DreamBooth loop on the subject's photos plus the gold samples with their
mining prompts (§3.3). The method's own numbers (k, the conflict thresholds, the learning rate) are
defaults here; the sizes default to the tiny profile: 2 prompts × 2 images per subject, 4 denoising
steps, so a round takes seconds per subject on a CPU; ``configs/sd14.yaml`` sets the production sizes
(25 prompts × 50 images, 50 steps, an LLM through vLLM).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from core.config.base import Section
from core.config.datagen import StageResources, VllmSection
from core.config.evaluation import ConflictSection, ScoringConfig
from core.config.finetune import MergedSection, Template, UNetTuning


class PromptWriterSection(Section):
    """Mining prompts written by an LLM through the S3 builder's backends (``core.llm_json``): one set of
    backgrounds, poses and outfits per class word, shared by every subject of that class (§3.2)."""

    backend: Literal["template", "transformers", "vllm"] = Field(
        "template", description="template: seeded from a list, no model; transformers: models.llm; vllm: GPU"
    )
    num_prompts: int = Field(2, ge=2, le=1000, description="mining prompts per class (production: 25)")
    max_prompt_chars: int = Field(120, ge=16, le=2000, description="longer prompts make the answer invalid")
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="LLM sampling temperature; 0 = greedy")
    max_new_tokens: int = Field(512, ge=16, le=16384)
    resources: StageResources = Field(default_factory=StageResources, description="transformers backend actor")
    vllm: VllmSection = Field(default_factory=VllmSection)


class MiningSection(Section):
    """The teacher draws every prompt's images in a Ray Data batch-inference job; another pool scores them."""

    images_per_prompt: int = Field(2, ge=1, le=10_000, description="samples per prompt (production: 50)")
    steps: int = Field(4, ge=1, le=1000, description="denoising steps")
    guidance_scale: float = Field(7.5, ge=1.0, le=50.0)
    generation_batch: int = Field(4, ge=1, le=1024, description="images per teacher call")
    scoring_batch: int = Field(8, ge=1, le=4096, description="images per scoring call")
    generation_actors: int = Field(1, ge=1, le=1024, description="teacher actors")
    scoring_actors: int = Field(1, ge=1, le=1024, description="scoring actors")
    gpus_per_generator: float = Field(0.0, ge=0.0, le=8.0, description="GPUs per teacher actor (0 = CPU)")
    gpus_per_scorer: float = Field(0.0, ge=0.0, le=8.0, description="GPUs per scoring actor (0 = CPU)")
    cpus_per_actor: float = Field(1.0, gt=0.0, le=256.0)
    encoder_batch: int = Field(32, ge=1, le=4096, description="images per CLIP/DINO forward pass")


class GoldSection(Section):
    """Gold = in the top k% by the image score AND in the top k% by the text score (§3.2, per subject and
    round): exactly ceil(k% · n) samples pass each score, ties broken by (prompt, sample)."""

    top_percent: float = Field(
        12.0,
        gt=0.0,
        le=100.0,
        description="k; the paper does not state it: 12 keeps 150 of 1,250 per score, ~17 gold per subject",
    )
    image_metric: Literal["mclip_i", "clip_i", "mdino", "dino"] = Field(
        "mclip_i", description="identity score; the paper's CLIP-MI = masked CLIP-I (detector + segmenter)"
    )
    text_metric: Literal["negclip_t", "clip_t", "hard_negative_acc"] = Field(
        "negclip_t", description="text score; the paper's NegCLIP-T (models.negclip)"
    )


class StudentSection(Section):
    gold_share: float = Field(
        0.5, ge=0.0, le=1.0, description="chance that a training image is a gold sample (when the subject has any)"
    )
    steps: int | None = Field(None, ge=1, le=100_000, description="student steps; null = finetune.dreambooth's")
    gold_prompt: Literal["mining", "instance"] = Field(
        "mining",
        description="a gold sample's training prompt: its mining prompt (§3.3), or instance_prompt (§4.3's ablation)",
    )


def _gold_scores() -> ScoringConfig:
    return ScoringConfig(negclip=True)


class SelfDistillSection(MergedSection):
    name: str = Field(
        "selfdistill-tiny",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$",
        description="run name under finetune.run.storage_path; rerunning with the same name resumes it",
    )
    rounds: int = Field(1, ge=1, le=20, description="teacher → student rounds (round r's student teaches r+1)")
    subject_id: str = Field(
        "{subject}-selfdistill",
        min_length=1,
        description="id of the final student ({subject}); teachers get -teacher, earlier students -r<round>",
    )
    teacher: str | None = Field(
        None,
        description="id template ({subject}) of published subjects to use as round-1 teachers "
        "(e.g. {subject}-dreambooth); null = train them with finetune.dreambooth",
    )
    unet: UNetTuning = Field(
        default_factory=lambda: UNetTuning(mode="full"),
        description="teacher and student: every UNet weight (§3.1, DreamBooth) or a LoRA",
    )
    lr: float = Field(5e-6, gt=0.0, le=1.0, description="teacher and student learning rate; 1e-4 suits unet.mode=lora")
    instance_prompt: Template = Field("a {0} {1}", description="the photos' prompt, 'a [V] [class noun]' (§3.1)")
    prompts: PromptWriterSection = Field(default_factory=PromptWriterSection)
    mining: MiningSection = Field(default_factory=MiningSection)
    scoring: ScoringConfig = Field(default_factory=_gold_scores, description="the gold filter's scorers")
    gold: GoldSection = Field(default_factory=GoldSection)
    conflict: ConflictSection = Field(default_factory=ConflictSection)
    student: StudentSection = Field(default_factory=StudentSection)

    @field_validator("subject_id", "teacher")
    @classmethod
    def _has_subject(cls, value: str | None) -> str | None:
        if value is not None and "{subject}" not in value:
            raise ValueError(f"{value!r} must contain {{subject}}")
        return value

    @model_validator(mode="after")
    def _scored(self) -> SelfDistillSection:
        if self.gold.text_metric == "negclip_t" and not self.scoring.negclip:
            raise ValueError("gold.text_metric: negclip_t needs scoring.negclip=true")
        if self.gold.image_metric.startswith("m") and not self.scoring.masked:
            raise ValueError(f"gold.image_metric: {self.gold.image_metric} needs scoring.masked=true")
        return self
