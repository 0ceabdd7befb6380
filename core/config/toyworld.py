"""Configuration of ToyWorld (``toyworld.*``): the rendered data, the toy base model, the two-stage
training recipe and the personalization experiment. Defaults are the shipped recipe; tests shrink it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from core.config.base import Section
from core.config.finetune import FinetuneSection, MergedSection, check_methods
from core.config.jedi import GuidanceMode, JeDiSampling
from core.config.training import RunSection
from core.jedi.guidance import GUIDANCE_MODES
from core.toyworld.world import SCENES

SPLITS = ("eval", "validation")
"""Trial seed families of the experiment (``evaluation.toyworld.trials``)."""


class ToyWorldDataSection(Section):
    """What ``s3jedi toyworld data`` renders: same-subject sets (S3 schema) and single captioned images."""

    size: int = Field(16, ge=8, le=64, description="image side in pixels (a multiple of the VAE's downsampling)")
    sets: int = Field(8000, ge=1, le=1_000_000, description="same-subject sets of the training subjects")
    set_size: int = Field(4, ge=2, le=16, description="images per set (each in its own scene)")
    singles: int = Field(16000, ge=1, le=1_000_000, description="single captioned images (base model training)")
    generic_fraction: float = Field(
        0.5, ge=0, le=1, description="share of images captioned only by scene ('a thing on the snow')"
    )
    shard_size: int = Field(500, ge=1, le=100_000, description="sets or singles per Parquet shard (one Ray task)")


class ToyWorldModelSection(Section):
    """The toy Stable-Diffusion-format base pipeline: its VAE (fitted on renders first), text encoder, UNet."""

    vae_widths: list[int] = Field(
        default_factory=lambda: [32, 64], min_length=1, max_length=4, description="VAE blocks; downsampling 2^(n-1)"
    )
    latent_channels: int = Field(4, ge=1, le=16)
    vae_steps: int = Field(2000, ge=1, le=1_000_000, description="VAE fitting steps on fresh renders")
    vae_batch: int = Field(32, ge=1, le=4096)
    vae_lr: float = Field(1e-3, gt=0, le=1)
    vae_kl_weight: float = Field(
        1e-6, ge=0, le=1, description="weight of the KL term (small: a near-deterministic code)"
    )
    unet_widths: list[int] = Field(
        default_factory=lambda: [64, 128], min_length=1, max_length=4, description="UNet block widths (multiples of 32)"
    )
    attention_head_dim: int = Field(16, ge=4, le=256)
    text_width: int = Field(64, ge=8, le=1024)
    text_layers: int = Field(2, ge=1, le=12)
    prediction_type: Literal["epsilon", "v_prediction", "sample"] = Field(
        "v_prediction", description="v: measured far better than epsilon at equal steps (docs/toyworld.md)"
    )
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "squaredcos_cap_v2"
    num_train_timesteps: int = Field(1000, ge=10, le=10_000)

    @model_validator(mode="after")
    def _check(self) -> ToyWorldModelSection:
        bad = [w for w in self.unet_widths if w % 32]
        if bad:
            raise ValueError(f"unet_widths: {bad} are not multiples of 32 (the UNet's group norm has 32 groups)")
        bad = [w for w in self.vae_widths if w % 16]
        if bad:
            raise ValueError(f"vae_widths: {bad} are not multiples of 16 (the VAE's group norm has 16 groups)")
        return self


class ToyWorldStage(Section):
    """One stage of the recipe, run by the JeDi trainer (``train.jedi`` with these values)."""

    steps: int = Field(..., ge=1, le=10_000_000)
    lr: float = Field(3e-4, gt=0, le=1)
    warmup_steps: int = Field(100, ge=0)
    sets_per_worker: int = Field(8, ge=1, le=4096)
    p_text_drop: float = Field(0.1, ge=0, le=1, description="share of fully unconditional sets")
    p_reference: float = Field(0.5, ge=0, le=1)
    p_reference_caption_drop: float = Field(0.5, ge=0, le=1)
    p_reference_channel_drop: float = Field(
        0.5, ge=0, le=1, description="share of text-dropped sets that also lose the reference channel"
    )
    ema_decay: float | None = Field(0.999, gt=0, lt=1, description="EMA of the UNet weights (exported); null = none")
    checkpoint_every: int = Field(500, ge=1)


class ToyWorldTrainSection(Section):
    """``s3jedi toyworld train``: data → base pipeline (VAE fit) → base T2I on singles → JeDi on sets."""

    out: str = Field("outputs/toyworld", description="working directory: data, base pipeline, runs")
    ship: str | None = Field(
        "assets/toyworld", description="copy the final base and JeDi pipelines here (git-tracked); null = don't"
    )
    base: ToyWorldStage = Field(
        default_factory=lambda: ToyWorldStage(steps=3000, lr=1e-3, sets_per_worker=32),
        description="text-to-image on single images (sets of one)",
    )
    jedi: ToyWorldStage = Field(
        default_factory=lambda: ToyWorldStage(steps=6000, lr=5e-4, sets_per_worker=8, p_reference_channel_drop=0.0),
        description="JeDi fine-tuning on same-subject sets, from the base stage's export",
    )
    jedi_continued: ToyWorldStage = Field(
        default_factory=lambda: ToyWorldStage(steps=3000, lr=2e-4, sets_per_worker=8, checkpoint_every=250),
        description="the JeDi stage continued with reference-channel dropout (the ε⁰ of the paper's image "
        "guidance in distribution); its export is the shipped JeDi model",
    )
    start_from: str | None = Field(
        None,
        description="a directory with base/ and jedi/ JeDi exports (e.g. assets/toyworld) taken as the finished "
        "base and JeDi stages: only the continuation runs, from jedi/; null = every stage from scratch",
    )
    min_set_size: int = Field(2, ge=2, le=16)
    max_set_size: int = Field(4, ge=2, le=16, description="largest set (references + target) the JeDi model takes")
    cpus_per_worker: float = Field(1.0, gt=0, description="CPUs of the one Ray Train worker")

    @model_validator(mode="after")
    def _check(self) -> ToyWorldTrainSection:
        if self.min_set_size > self.max_set_size:
            raise ValueError(f"min_set_size ({self.min_set_size}) must be <= max_set_size ({self.max_set_size})")
        return self


def toy_finetune() -> FinetuneSection:
    """``finetune.*`` for the toy base (16 px, 8×8 latents, a randomly initialised frozen text encoder):
    captions in the world's grammar, step counts and learning rates measured on it (docs/decisions.md,
    ToyWorld). The store, run storage, class words and base model are set by the experiment."""
    return FinetuneSection.model_validate(
        {
            "resolution": 16,
            "concurrency": 2,
            "dreambooth": {
                "prompt_template": "a {0} {1}",
                "prior": {"enabled": False},
                "train": {"steps": 600, "optim": {"lr": 1e-3}},
            },
            # TI's English captions mean nothing to the toy text encoder: the world's own caption instead.
            "ti": {"prompt_template": "a {0}", "captions": [], "train": {"steps": 300, "optim": {"lr": 5e-3}}},
            "two_stage": {
                "prompt_template": "a {0} {1}",
                "stage1": {"steps": 100, "optim": {"lr": 5e-3}},
                "stage2": {"steps": 100, "optim": {"lr": 2e-4}},
            },
            "core": {
                "prompt_template": "a {0}",
                "animate_prompts": [f"a {{0}} on the {scene}" for scene in SCENES],
                "inanimate_prompts": [f"a {{0}} on the {scene}" for scene in SCENES],
                "stage1": {"steps": 100},
                "rescale_start": 40,
                "rescale_end": 60,
                "prior": {"enabled": False},
                "stage2": {"steps": 100, "optim": {"lr": 2e-4}},
                "tto_steps": 0,  # measured: 10 test-time steps cut identity from 0.875 to 0.625
            },
            "run": RunSection(name="toyworld-finetune", checkpoint_every=100_000, num_to_keep=1, log_every=100_000),
        }
    )


def _methods() -> list[str]:
    from core.methods import BUILTIN_NAMES

    return list(BUILTIN_NAMES)


class ToyWorldEvalSection(MergedSection, JeDiSampling):
    """``s3jedi toyworld eval``: novel subjects, prompts naming only the scene and a generic word.

    ``guidance``, ``image_guidance_scale`` and ``joint_targets`` are the defaults JeDi is measured at
    (the pipeline's own); the sweep rows vary guidance and λ at K = 2."""

    jedi: str = Field("assets/toyworld/jedi", description="JeDi pipeline directory (the recipe's export)")
    base: str = Field("assets/toyworld/base", description="base text-to-image pipeline (JeDi format, stage 1)")
    out: str = Field("outputs/toyworld/eval", description="report directory (report.md, report.html, grids)")
    subjects: int | None = Field(None, ge=1, description="first N novel subjects only (smoke runs); null = all")
    trials: int = Field(6, ge=1, le=1000, description="seeds per novel subject (each: new references, new scene)")
    split: Literal[SPLITS] = Field(
        "eval", description="which seeds: validation (choose settings on it) or eval (report on it, never tune)"
    )
    references: list[int] = Field(default_factory=lambda: [1, 2, 3], min_length=1, description="reference counts K")
    guidance_modes: list[GuidanceMode] = Field(
        default_factory=lambda: list(GUIDANCE_MODES), min_length=1, description="guidance modes swept at K = 2"
    )
    image_guidance_scales: list[float] = Field(
        default_factory=lambda: [1.0, 2.0, 3.0, 5.0, 7.0], min_length=1, description="λ values swept at K = 2"
    )
    guidance_scale: float = Field(
        3.0, ge=0, le=50, description="text guidance s of the decomposed rows, the floors and the fine-tuning rows"
    )
    joint_comparison: bool = Field(
        True, description="rows drawing max_set_size - K images per trial, jointly and in separate sets"
    )
    steps: int = Field(25, ge=1, le=1000, description="DDIM denoising steps")
    loss_timesteps: int = Field(8, ge=1, le=1000, description="timesteps (with fixed noise) per loss-gap trial")
    finetune_methods: list[str] = Field(
        default_factory=_methods,
        description="fine-tuning rows (each method trained on every novel subject, on the base converted to a "
        "plain SD pipeline); [] = none",
    )
    finetune_images: int = Field(
        3,
        ge=1,
        le=len(SCENES),
        description="renders per novel subject the fine-tuning methods train on, one scene each",
    )
    finetune: FinetuneSection = Field(
        default_factory=toy_finetune,
        description="fine-tuning settings of those rows; store, run.storage_path, class words and models.sd are "
        "replaced by the experiment (a work directory under `out`, the generic word, the converted base)",
    )
    confidence: float = Field(0.95, gt=0, lt=1)
    resamples: int = Field(2000, ge=100, le=1_000_000, description="bootstrap resamples")
    threads: int = Field(
        1, ge=1, le=256, description="torch threads while sampling (16 px models: more threads only oversubscribe)"
    )

    @model_validator(mode="after")
    def _check(self) -> ToyWorldEvalSection:
        check_methods(self.finetune_methods, "finetune_methods")  # after finetune.plugins registered theirs
        return self


class ToyWorldSection(Section):
    data: ToyWorldDataSection = Field(default_factory=ToyWorldDataSection)
    model: ToyWorldModelSection = Field(default_factory=ToyWorldModelSection)
    train: ToyWorldTrainSection = Field(default_factory=ToyWorldTrainSection)
    eval: ToyWorldEvalSection = Field(default_factory=ToyWorldEvalSection)
