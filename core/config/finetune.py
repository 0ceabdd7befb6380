"""Fine-tuning personalization (``finetune.*``): DreamBooth, Textual Inversion, two-stage TI→UNet, CoRe.

Each method has its own sub-section holding the hyperparameters its authors published (learning rates,
step counts, regularization weights); they are method properties, not model-size properties, and
they run in seconds to minutes on the tiny model too. The shared part says how subject images are
prepared, how many subjects train at once, and where runs and outputs live. The training shell's
``OptimSection``/``ScalingSection``/``RunSection`` are reused as they are.

Which methods exist is the registry's business (``core.methods``): ``method`` is checked against it,
after the modules named in ``plugins`` have registered theirs.

Prompt templates use the DreamBooth benchmark's placeholders: ``{0}`` is the subject's identifier
token(s), ``{1}`` its class word (``"a photo of {0} {1}"`` → ``"a photo of sks dog"``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, field_validator, model_validator

from core.config.base import Section
from core.config.core_prompts import ANIMATE_CLASSES, ANIMATE_PROMPTS, INANIMATE_PROMPTS
from core.config.training import OptimSection, RunSection, ScalingSection


def _deep_merge(base: dict, update: dict) -> dict:
    merged = dict(base)
    for key, value in update.items():
        merged[key] = (
            _deep_merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
        )
    return merged


class MergedSection(Section):
    """A section whose sub-sections have *method-specific* defaults (``default_factory``).

    ``--set finetune.ti.train.steps=3`` arrives as ``{"train": {"steps": 3}}``; without merging, the
    other fields of ``train`` would fall back to the class defaults (a generic optimizer) instead of
    the method's. Unknown keys still fail: the merged dict is validated with ``extra="forbid"``.
    """

    @model_validator(mode="before")
    @classmethod
    def _merge_factory_defaults(cls, data):
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for name, field in cls.model_fields.items():
            if field.default_factory is not None and isinstance(data.get(name), dict):
                default = field.default_factory()
                if isinstance(default, BaseModel):
                    data[name] = _deep_merge(default.model_dump(), data[name])
        return data


def _optim(lr: float, weight_decay: float = 1e-2) -> OptimSection:
    return OptimSection(lr=lr, schedule="constant", weight_decay=weight_decay)


def _has_token_slot(value: str) -> str:
    if "{0}" not in value:
        raise ValueError(f"{value!r} must contain {{0}} where the identifier token goes")
    return value


Template = Annotated[str, AfterValidator(_has_token_slot)]


class StageSection(Section):
    """One optimisation stage: how many steps, and the optimizer for what it trains."""

    steps: int = Field(..., ge=0, le=100_000, description="optimizer steps (0 = skip the stage)")
    optim: OptimSection


class PriorSection(Section):
    """DreamBooth's prior preservation: class images drawn by the base model keep the class prior."""

    enabled: bool = True
    num_images: int = Field(200, ge=1, le=10_000, description="class images generated (and cached) per class")
    loss_weight: float = Field(1.0, ge=0.0, le=100.0, description="weight of the class-image loss")


class NewTokenSection(Section):
    """A token added to the tokenizer whose embedding row(s) are learned (textual inversion)."""

    token: str = Field("<sks>", min_length=1, max_length=32, pattern=r"^\S+$")
    initializer: str = Field(
        "{1}",
        min_length=1,
        description="word whose embedding starts the token ({1} = the class word; several tokens are averaged)",
    )
    num_vectors: int = Field(1, ge=1, le=16, description="embedding vectors per token (diffusers' <t>, <t>_1, ...)")


class UNetTuning(Section):
    mode: Literal["full", "lora"] = Field(..., description="train every UNet weight, or a PEFT LoRA on attention")
    lora_rank: int = Field(4, ge=1, le=256)

    @property
    def lora_alpha(self) -> int:
        return self.lora_rank


class DreamBoothSection(MergedSection):
    token: str = Field(
        "sks",
        min_length=1,
        max_length=32,
        pattern=r"^\S+$",
        description="identifier: an existing rare token, as in the paper (not added to the tokenizer)",
    )
    prompt_template: Template = "a photo of {0} {1}"
    unet: UNetTuning = Field(default_factory=lambda: UNetTuning(mode="lora"))
    train_text_encoder: bool = Field(False, description="also train the text encoder (LoRA or full, as the UNet)")
    prior: PriorSection = Field(default_factory=PriorSection)
    train: StageSection = Field(
        default_factory=lambda: StageSection(steps=400, optim=_optim(1e-4)),
        description="lr 1e-4 suits LoRA; use 5e-6 with unet.mode=full",
    )


TI_CAPTIONS = (
    "a photo of a {0}",
    "a rendering of a {0}",
    "a cropped photo of the {0}",
    "the photo of a {0}",
    "a photo of a clean {0}",
    "a photo of a dirty {0}",
    "a dark photo of the {0}",
    "a photo of my {0}",
    "a photo of the cool {0}",
    "a close-up photo of a {0}",
    "a bright photo of the {0}",
    "a cropped photo of a {0}",
    "a photo of the {0}",
    "a good photo of the {0}",
    "a photo of one {0}",
    "a close-up photo of the {0}",
    "a rendition of the {0}",
    "a photo of the clean {0}",
    "a rendition of a {0}",
    "a photo of a nice {0}",
    "a good photo of a {0}",
    "a photo of the nice {0}",
    "a photo of the small {0}",
    "a photo of the weird {0}",
    "a photo of the large {0}",
    "a photo of a cool {0}",
    "a photo of a small {0}",
)
"""Textual Inversion's object captions (Gal et al., the authors' ``imagenet_templates_small``, which the
diffusers example reuses): each training photo gets one drawn at random per step."""


class TextualInversionSection(MergedSection):
    """Textual Inversion as paper 001 compares with it (§3.1.1, §3.2.1: "3,000-5,000 updating steps"):
    the sd14 profile trains 3,000 steps (the diffusers example's count at lr 5e-4); the code default
    (500) is the tiny profile's."""

    token: NewTokenSection = Field(default_factory=NewTokenSection)
    prompt_template: Template = Field(
        "a photo of {0}", description="the subject's prompt on its card and in validation"
    )
    captions: list[Template] = Field(
        default_factory=lambda: list(TI_CAPTIONS),
        max_length=1000,
        description="training captions, one drawn per photo and step ([] = prompt_template for every photo)",
    )
    train: StageSection = Field(default_factory=lambda: StageSection(steps=500, optim=_optim(5e-4)))


class TwoStageSection(MergedSection):
    """Paper 001: stage 1 learns an adjective-like token for the subject; stage 2 fine-tunes the UNet on
    it with the token and the text encoder frozen and no prior preservation. §4.1 saves stage 2 every
    200 steps up to 800 and keeps the checkpoint whose images best match the training photos: here
    each such checkpoint is scored (mean DINO similarity of ``select_images`` samples of the subject's
    prompt to its photos) and the best one is published, every score on the subject's card."""

    token: NewTokenSection = Field(default_factory=lambda: NewTokenSection(token="<rare>", initializer="rare"))
    prompt_template: Template = "a photo of {0} {1}"
    stage1: StageSection = Field(default_factory=lambda: StageSection(steps=100, optim=_optim(5e-4)))
    stage2: StageSection = Field(default_factory=lambda: StageSection(steps=400, optim=_optim(5e-6)))
    unet: UNetTuning = Field(default_factory=lambda: UNetTuning(mode="full"))
    select_every: int = Field(
        200, ge=0, le=100_000, description="stage-2 steps between scored checkpoints (§4.1: 200); 0 = publish the last"
    )
    select_images: int = Field(4, ge=1, le=256, description="samples of the subject's prompt per scored checkpoint")

    @model_validator(mode="after")
    def _check(self) -> TwoStageSection:
        if self.stage2.steps > 800:
            raise ValueError(f"stage2.steps: the method fine-tunes the UNet for 200-800 steps, got {self.stage2.steps}")
        return self


def _regularization_prompts(value: list[str]) -> list[str]:
    for prompt in value:
        if prompt.count("{0}") != 1:
            raise ValueError(f"{prompt!r} must contain {{0}} exactly once")
    return value


RegularizationPrompts = Annotated[
    list[str], AfterValidator(_regularization_prompts), Field(min_length=1, max_length=1000)
]


class CoReSection(MergedSection):
    """CoRe (paper 003): textual inversion with context regularization, then the UNet with the
    embedding frozen; test-time optimization before a prompt is drawn. The paper gives no numbers;
    the defaults are its authors' public scripts on SD2.1-base (pangy9/CoRe ``train.sh``,
    ``test_time_optimization.sh``; ``docs/decisions.md``)."""

    token: NewTokenSection = Field(default_factory=NewTokenSection)
    prompt_template: Template = "a photo of a {0}"
    stage1: StageSection = Field(
        default_factory=lambda: StageSection(steps=300, optim=_optim(5e-3)),
        description="the embedding: 300 steps at lr 5e-3, AdamW with the authors' default weight decay 1e-2",
    )
    lambda_emb: float = Field(1.5e-4, ge=0.0, le=100.0, description="weight of L_emb (Eq. 3)")
    lambda_attn: float = Field(0.05, ge=0.0, le=100.0, description="weight of L_attn (Eq. 4)")
    rescale_start: int = Field(
        120, ge=0, description="first stage-1 step whose update keeps the embedding norm (Eq. 6)"
    )
    rescale_end: int = Field(180, ge=0, description="last stage-1 step whose update keeps the embedding norm")
    animate_prompts: RegularizationPrompts = Field(
        default_factory=lambda: list(ANIMATE_PROMPTS), description="regularization prompts of animate subjects"
    )
    inanimate_prompts: RegularizationPrompts = Field(
        default_factory=lambda: list(INANIMATE_PROMPTS), description="regularization prompts of every other subject"
    )
    animate_classes: list[str] = Field(
        default_factory=lambda: list(ANIMATE_CLASSES),
        max_length=10_000,
        description="class words whose subjects take animate_prompts",
    )
    stage2: StageSection = Field(
        default_factory=lambda: StageSection(steps=1000, optim=_optim(2e-6)),
        description="every UNet weight, the embedding frozen",
    )
    unet: UNetTuning = Field(default_factory=lambda: UNetTuning(mode="full"))
    prior: PriorSection = Field(
        default_factory=lambda: PriorSection(enabled=False),
        description="prior preservation in stage 2: off, as in the paper and the authors' stage-2 script",
    )
    tto_steps: int = Field(10, ge=0, le=1000, description="test-time optimization steps before a prompt is drawn")
    tto_optim: OptimSection = Field(
        default_factory=lambda: _optim(5e-4), description="test-time optimization of the embedding (lr, betas, decay)"
    )

    def regularization_prompts(self, class_word: str) -> list[str]:
        """The list a subject of ``class_word`` regularizes with (paper 003: animate / inanimate)."""
        animate = class_word.strip().lower() in {c.strip().lower() for c in self.animate_classes}
        return self.animate_prompts if animate else self.inanimate_prompts

    @model_validator(mode="after")
    def _window(self) -> CoReSection:
        if self.rescale_start > self.rescale_end:
            raise ValueError(f"rescale_start ({self.rescale_start}) must be <= rescale_end ({self.rescale_end})")
        return self


class ClassImagesSection(Section):
    """How the base model draws class images for prior preservation (a Ray Data job, cached per class)."""

    prompt: str = Field("a photo of a {1}", min_length=1, description="{1} = the class word")
    steps: int = Field(4, ge=1, le=1000, description="denoising steps")
    guidance_scale: float = Field(7.5, ge=1.0, le=50.0)
    batch_size: int = Field(4, ge=1, le=256)
    actors: int = Field(1, ge=1, le=1024, description="generator actors (one GPU each when scaling.use_gpu)")


def check_methods(names: list[str], field: str = "") -> list[str]:
    """Every name a method that ``s3jedi finetune --method`` offers (``core.methods``)."""
    from core.methods import names as offered

    unknown = [n for n in names if n not in offered()]
    if unknown:
        raise ValueError(f"{field + ': ' if field else ''}{unknown[0]!r} is not one of {', '.join(offered())}")
    return names


class FinetuneSection(MergedSection):
    plugins: list[str] = Field(
        default_factory=list,
        description="modules that register more fine-tuning methods (core.methods.register); imported wherever "
        "this config is loaded, Ray workers and Serve replicas included",
    )
    method: str = Field("dreambooth", description="default for --method (a registered method)")
    subject_id: str = Field(
        "{subject}-{method}", min_length=1, description="id of the output subject: {subject}, {method} placeholders"
    )
    classes: str = Field(
        "../shared/dreambooth/subjects.json",
        description='class words: JSON [{"subject": name, "class": word}] (the DreamBooth benchmark file)',
    )
    class_words: dict[str, str] = Field(default_factory=dict, description="subject → class word; wins over classes")
    resolution: int = Field(64, ge=8, le=2048, description="training image side (multiple of 8)")
    batch_size: int = Field(1, ge=1, le=256, description="subject images per step (as many class images added)")
    flip: bool = Field(True, description="random horizontal flips of subject images")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field("auto", description="auto: bf16 on GPU, fp32 on CPU")
    gradient_checkpointing: bool = False
    validate_every: int = Field(0, ge=0, description="steps between validation samples; 0 = only at the end")
    validation_steps: int = Field(4, ge=1, le=1000, description="denoising steps of a validation sample")
    concurrency: int = Field(2, ge=1, le=10_000, description="subjects trained at the same time")
    store: str | None = Field(
        None,
        description="subject store the results are published to; null = serving.subjects_store, else "
        "$S3JEDI_HOME/subjects",
    )
    dreambooth: DreamBoothSection = Field(default_factory=DreamBoothSection)
    ti: TextualInversionSection = Field(default_factory=TextualInversionSection)
    two_stage: TwoStageSection = Field(default_factory=TwoStageSection)
    core: CoReSection = Field(default_factory=CoReSection)
    class_images: ClassImagesSection = Field(default_factory=ClassImagesSection)
    scaling: ScalingSection = Field(default_factory=ScalingSection)
    run: RunSection = Field(
        default_factory=lambda: RunSection(name="finetune-tiny", checkpoint_every=100, num_to_keep=1)
    )

    @model_validator(mode="before")
    @classmethod
    def _import_plugins(cls, data):
        plugins = data.get("plugins") if isinstance(data, dict) else None
        if isinstance(plugins, list) and all(isinstance(p, str) for p in plugins):
            from core.methods.registry import import_plugins

            import_plugins(plugins)
        return data

    @field_validator("method")
    @classmethod
    def _method(cls, value: str) -> str:
        return check_methods([value])[0]

    @field_validator("subject_id")
    @classmethod
    def _subject_id(cls, value: str) -> str:
        if "{subject}" not in value:
            raise ValueError(f"{value!r} must contain {{subject}}")
        return value

    @model_validator(mode="after")
    def _check(self) -> FinetuneSection:
        if self.resolution % 8:
            raise ValueError(f"resolution must be a multiple of 8, got {self.resolution}")
        if self.scaling.num_workers != 1:
            raise ValueError(
                f"scaling.num_workers: one worker per subject (got {self.scaling.num_workers}); "
                "scale out over subjects with finetune.concurrency"
            )
        if self.precision in ("bf16", "fp16") and not self.scaling.use_gpu:
            raise ValueError(f"precision {self.precision} needs GPU workers (scaling.use_gpu: true); use auto or fp32")
        if self.core.rescale_end > self.core.stage1.steps and self.core.stage1.steps:
            raise ValueError(
                f"core.rescale_end ({self.core.rescale_end}) exceeds core.stage1.steps ({self.core.stage1.steps})"
            )
        return self
