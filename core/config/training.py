"""Configuration of the trainers (``train.*``): the shared training shell and the JeDi trainer."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from core.config.base import Section


class ScalingSection(Section):
    """Ray Train ``ScalingConfig``: how many workers and what each one holds."""

    num_workers: int = Field(1, ge=1, le=1024, description="data-parallel workers")
    use_gpu: bool = Field(False, description="one GPU per worker (DDP over NCCL); False = CPU (gloo)")
    cpus_per_worker: float = Field(1.0, gt=0)
    gpus_per_worker: float = Field(1.0, gt=0, description="only used with use_gpu")
    accelerator_type: str | None = Field(None, description="e.g. A100, L4: pins workers to that GPU type")


class OptimSection(Section):
    name: Literal["adamw", "sgd"] = Field("adamw", description="sgd makes updates linear in the gradient (DDP checks)")
    lr: float = Field(1e-4, gt=0, le=1.0)
    weight_decay: float = Field(1e-2, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    max_grad_norm: float = Field(1.0, gt=0)
    schedule: Literal["constant", "cosine", "linear"] = "cosine"
    warmup_steps: int = Field(0, ge=0)
    adam_8bit: bool = Field(False, description="bitsandbytes AdamW8bit (GPU only, `gpu` extra)")


class RunSection(Section):
    """Where a run lives, and how it survives failures (Ray Train ``RunConfig``)."""

    name: str = Field(
        "jedi-tiny",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$",
        description="run name; rerunning with the same name resumes it",
    )
    storage_path: str = Field(
        "runs", description="local dir (relative = to the working directory) or URI (s3://, gs://)"
    )
    checkpoint_every: int = Field(25, ge=1, description="steps between checkpoints")
    num_to_keep: int = Field(2, ge=1, description="checkpoints kept (oldest deleted)")
    max_failures: int = Field(2, ge=-1, description="worker-group restarts from the last checkpoint; -1 = unlimited")
    log_every: int = Field(
        25,
        ge=1,
        description="steps between progress lines and windowed metrics (loss, steps/s, ETA); TensorBoard gets "
        "each step's loss, Ray Train a report with every checkpoint",
    )
    mlflow_tracking_uri: str | None = Field(None, description="also log metrics to MLflow (needs the mlflow extra)")


class DataSource(Section):
    kind: Literal["s3", "folder", "captions", "latents", "video"] = Field(
        ...,
        description="s3: S3 Parquet sets; folder: one sub-folder per subject (multi-view renders: one per object); "
        "captions: single captioned images (Parquet with image+caption, or a folder with NAME.txt beside each "
        "image); latents: the output of `s3jedi train precompute-latents`; video: clips (a folder, or a Parquet "
        "file with path+caption), frames at random distinct times",
    )
    path: str = Field(
        ..., min_length=1, description="directory or URI; a relative path is taken from the working directory"
    )
    weight: float = Field(1.0, gt=0, description="share of steps drawn from this source (normalised)")
    caption: str = Field(
        "a photo of {name}",
        description="folder sets / video clips without NAME.txt: {name} = sub-folder name / clip file name",
    )
    frames: int = Field(
        8,
        ge=1,
        le=64,
        description="video: frames per clip, at random distinct times; micro-batches draw their sets from them",
    )


class JeDiDataSection(Section):
    sources: list[DataSource] = Field(
        default_factory=lambda: [DataSource(kind="folder", path="../shared/dreambooth/images")],
        min_length=1,
    )
    resolution: int = Field(64, ge=8, le=2048, description="training image side (multiple of 8)")
    min_set_size: int = Field(2, ge=1, le=16)
    max_set_size: int = Field(4, ge=1, le=16)
    min_crop_scale: float = Field(0.8, gt=0, le=1, description="smallest crop side / image shorter side")
    flip: bool = Field(True, description="random horizontal flip, the same for every image of a set")

    @model_validator(mode="after")
    def _check(self) -> JeDiDataSection:
        if self.min_set_size > self.max_set_size:
            raise ValueError(f"min_set_size ({self.min_set_size}) must be <= max_set_size ({self.max_set_size})")
        if self.resolution % 8:
            raise ValueError(f"resolution must be a multiple of 8, got {self.resolution}")
        for i, src in enumerate(self.sources):
            if src.kind == "video" and src.frames < self.max_set_size:
                raise ValueError(
                    f"sources[{i}].frames: {src.frames} frames per clip cannot fill sets of max_set_size "
                    f"{self.max_set_size}"
                )
        return self


class JeDiTrainSection(Section):
    steps: int = Field(50, ge=1, description="optimizer steps")
    sets_per_worker: int = Field(2, ge=1, le=4096, description="sets per worker per micro-batch")
    grad_accum: int = Field(1, ge=1, le=1024)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field("auto", description="auto: bf16 on GPU, fp32 on CPU")
    gradient_checkpointing: bool = False
    parallel: Literal["ddp", "fsdp"] = Field("ddp", description="Ray Train prepare_model strategy")
    ema_decay: float | None = Field(None, gt=0, lt=1, description="keep an EMA of the UNet weights (e.g. 0.9999)")
    p_reference: float = Field(0.5, ge=0, le=1, description="probability that an image's reference is given")
    p_text_drop: float = Field(0.1, ge=0, le=1, description="probability that a set's text is dropped")
    p_reference_caption_drop: float = Field(
        0.5, ge=0, le=1, description="probability that a given reference loses its caption (uncaptioned user photos)"
    )
    p_reference_channel_drop: float = Field(
        0.5,
        ge=0,
        le=1,
        description="probability that a set whose text is dropped also loses its reference channel (mask kept): "
        "the input of the paper's image guidance, ε_θ(x_t, 0, M)",
    )
    max_set_size: int = Field(4, ge=2, le=16, description="largest set the model is built for (refs + target)")
    init_from: str | None = Field(None, description="continue from a JeDi pipeline dir; default: widen models.sd")
    validate_every: int = Field(0, ge=0, description="steps between validation sample grids; 0 = only at the end")
    validation_steps: int = Field(4, ge=1, description="denoising steps of the validation samples")
    data: JeDiDataSection = Field(default_factory=JeDiDataSection)
    optim: OptimSection = Field(default_factory=OptimSection)
    scaling: ScalingSection = Field(default_factory=ScalingSection)
    run: RunSection = Field(default_factory=RunSection)

    @model_validator(mode="after")
    def _check(self) -> JeDiTrainSection:
        if self.precision in ("bf16", "fp16") and not self.scaling.use_gpu:
            raise ValueError(f"precision {self.precision} needs GPU workers (scaling.use_gpu: true); use auto or fp32")
        if self.optim.adam_8bit and not self.scaling.use_gpu:
            raise ValueError("optim.adam_8bit needs GPU workers (scaling.use_gpu: true)")
        if self.data.max_set_size > self.max_set_size:
            raise ValueError(f"data.max_set_size ({self.data.max_set_size}) exceeds max_set_size ({self.max_set_size})")
        return self


class TrainSection(Section):
    resume: Literal["check", "force"] = Field(
        "check",
        description="rerunning a run name continues it; check: refuse when settings that decide the weights "
        "changed (JeDi, fine-tuning and multi-concept runs alike), force: continue with the new settings",
    )
    jedi: JeDiTrainSection = Field(default_factory=JeDiTrainSection)
