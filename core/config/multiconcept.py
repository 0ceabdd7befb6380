"""Concept-driven EM for multi-concept scenes (``multiconcept.*``).

One new token per concept (subjects and background) is learned from 1..M images without masks
(paper 004): a warm start inverts the tokens on the whole images (no masks); masks then come from the
tokens' own cross-attention (averaged over layers and random timesteps, thresholded, the image's
concepts competing for its pixels in a DenseCRF) and are re-estimated every ``estep_every`` steps while
the tokens learn on them; a final phase trains tokens and the UNet weights with the masks fixed (as
Break-A-Scene; a LoRA with ``unet.mode: lora``). The step counts, loss weight and phase-2 learning
rate follow Break-A-Scene (400 steps in two phases, attention loss 0.01, 2e-6); the CRF parameters are
CutLER's. Defaults are the tiny profile (64 px); the method's step counts are the same everywhere.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from core.config.base import Section
from core.config.finetune import MergedSection, UNetTuning
from core.config.training import OptimSection, RunSection, ScalingSection


class ConceptSection(Section):
    token: str = Field(..., min_length=1, max_length=32, pattern=r"^\S+$", description="the new token, e.g. <v1>")
    initializer: str | None = Field(
        None, min_length=1, max_length=64, description="word(s) whose embedding starts the token; null = random"
    )


class CRFSection(Section):
    """DenseCRF refinement of a thresholded attention mask (pydensecrf; defaults = CutLER's maskcut/crf.py)."""

    enabled: bool = Field(True, description="refine masks with the CRF (false = threshold only)")
    iterations: int = Field(10, ge=1, le=1000, description="mean-field iterations")
    pos_w: float = Field(7.0, ge=0.0, le=1000.0, description="Gaussian (smoothness) kernel weight")
    pos_xy_std: float = Field(3.0, gt=0.0, le=1000.0, description="Gaussian kernel spatial std, pixels")
    bi_w: float = Field(10.0, ge=0.0, le=1000.0, description="bilateral (appearance) kernel weight")
    bi_xy_std: float = Field(50.0, gt=0.0, le=1000.0, description="bilateral kernel spatial std, pixels")
    bi_rgb_std: float = Field(5.0, gt=0.0, le=1000.0, description="bilateral kernel colour std")


def _optim(lr: float, weight_decay: float) -> OptimSection:
    return OptimSection(lr=lr, schedule="constant", weight_decay=weight_decay)


class MultiConceptSection(MergedSection):
    concepts: list[ConceptSection] | None = Field(
        None, max_length=16, description="concepts of the scene; null = the scene folder's scene.json"
    )
    subject_id: str = Field("{scene}-multiconcept", min_length=1, description="output id; {scene} = folder name")
    resolution: int = Field(64, ge=8, le=2048, description="training image side (multiple of 8)")
    warmup_steps: int = Field(
        50, ge=0, le=100_000, description="warm start: token steps on the whole images before the first E-step"
    )
    em_steps: int = Field(300, ge=0, le=100_000, description="phase 1: token steps with masks re-estimated")
    joint_steps: int = Field(100, ge=0, le=100_000, description="phase 2: tokens + UNet, masks fixed")
    estep_every: int = Field(50, ge=1, le=100_000, description="token steps between mask re-estimations")
    estep_timesteps: int = Field(50, ge=1, le=1000, description="random timesteps the attention is averaged over")
    mask_threshold: float = Field(0.5, gt=0.0, lt=1.0, description="on the min-max normalised attention map")
    lambda_attn: float = Field(0.01, ge=0.0, le=100.0, description="weight of the cross-attention loss")
    prompt_template: str = Field(
        "a photo of {concepts}", description="training prompt; {concepts} = the step's tokens joined by ' and '"
    )
    token_optim: OptimSection = Field(default_factory=lambda: _optim(5e-4, 0.0), description="phase 1 (tokens)")
    joint_optim: OptimSection = Field(
        default_factory=lambda: _optim(2e-6, 1e-2), description="phase 2 (Break-A-Scene's 2e-6; ~1e-4 for a LoRA)"
    )
    unet: UNetTuning = Field(
        default_factory=lambda: UNetTuning(mode="full"), description="phase 2: every UNet weight, or a LoRA"
    )
    crf: CRFSection = Field(default_factory=CRFSection)
    sample_prompts: list[str] = Field(
        default_factory=lambda: ["a photo of {c0} and {c1}", "{c0} next to {c1} on the beach"],
        max_length=64,
        description="drawn after training; {cK} = concept K's token",
    )
    sample_steps: int = Field(4, ge=1, le=1000)
    sample_guidance: float = Field(7.5, ge=1.0, le=50.0)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field("auto", description="auto: bf16 on GPU, fp32 on CPU")
    scaling: ScalingSection = Field(default_factory=lambda: ScalingSection(cpus_per_worker=1.0))
    run: RunSection = Field(
        default_factory=lambda: RunSection(name="multiconcept-tiny", checkpoint_every=50, num_to_keep=1)
    )

    @field_validator("resolution")
    @classmethod
    def _multiple_of_8(cls, value: int) -> int:
        if value % 8:
            raise ValueError("must be a multiple of 8 (the VAE downsamples 8x)")
        return value

    @field_validator("subject_id")
    @classmethod
    def _scene_slot(cls, value: str) -> str:
        if "{scene}" not in value:
            raise ValueError(f"{value!r} must contain {{scene}}")
        return value

    @field_validator("prompt_template")
    @classmethod
    def _concepts_slot(cls, value: str) -> str:
        if value.count("{concepts}") != 1:
            raise ValueError(f"{value!r} must contain {{concepts}} exactly once")
        return value

    @model_validator(mode="after")
    def _check(self) -> MultiConceptSection:
        if self.warmup_steps + self.em_steps + self.joint_steps == 0:
            raise ValueError("em_steps + joint_steps: at least one training step is required")
        if self.scaling.num_workers != 1:
            raise ValueError(f"scaling.num_workers: one worker per scene (got {self.scaling.num_workers})")
        if self.precision in ("bf16", "fp16") and not self.scaling.use_gpu:
            raise ValueError(f"precision {self.precision} needs GPU workers (scaling.use_gpu: true); use auto or fp32")
        return self

    @property
    def total_steps(self) -> int:
        return self.warmup_steps + self.em_steps + self.joint_steps

    @property
    def em_end(self) -> int:
        """The last token step (warm start and phase 1); the joint phase follows."""
        return self.warmup_steps + self.em_steps
