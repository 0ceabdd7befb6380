"""Configuration of the S3 dataset builder (``datagen.*``): one section per stage plus how it runs.

Defaults are the tiny profile: a few subjects from the template backend, 64-pixel images, 2
denoising steps, thresholds the tiny random models pass, and fractional CPUs per actor so that
all stage pools fit on a 2-core machine. Production profiles raise sizes and steps, switch the LLM
to vLLM and give the model stages GPUs.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails

from core.config.base import Section


class StageResources(Section):
    """How one stage runs on Ray: model stages are actor pools, the writer runs as tasks."""

    num_gpus: float = Field(0.0, ge=0.0, le=8.0, description="GPUs per actor (0 = CPU); fractions share a GPU")
    num_cpus: float = Field(0.25, gt=0.0, le=256.0, description="CPUs reserved per actor or task")
    concurrency: int = Field(1, ge=1, le=1024, description="actors in the pool (tasks in flight for CPU stages)")
    batch_size: int = Field(1, ge=1, le=4096, description="subjects per call")


class VllmSection(Section):
    """``ray.data.llm.vLLMEngineProcessorConfig`` for the ``vllm`` backend (GPU only)."""

    engine_kwargs: dict[str, Any] = Field(
        default_factory=lambda: {"max_model_len": 4096, "enable_prefix_caching": True},
        description="passed to the vLLM engine (tensor_parallel_size, dtype, gpu_memory_utilization, ...)",
    )
    concurrency: int = Field(1, ge=1, le=1024, description="vLLM engine replicas (one GPU each at TP=1)")
    batch_size: int = Field(64, ge=1, le=4096, description="prompts per engine call")
    accelerator_type: str | None = Field(None, description="pin the engine to a GPU type (A100, L4, ...)")


class SubjectsSection(Section):
    """Stage 1: categories → subject descriptions and scene prompts written by an LLM."""

    backend: Literal["template", "transformers", "vllm"] = Field(
        "template", description="template: deterministic, no model; transformers: models.llm on CPU/GPU; vllm: GPU"
    )
    categories_file: str = Field(
        "datagen/categories.txt",
        min_length=1,
        description="one category per line, '#' comments; relative = working directory, else the shipped file",
    )
    categories: list[str] | None = Field(None, description="inline categories; when set, categories_file is unused")
    num_categories: int | None = Field(3, ge=1, description="categories drawn (seeded) from the list; null = all")
    subjects_per_category: int = Field(1, ge=1, le=10_000)
    num_scenes: int = Field(2, ge=1, le=16, description="scene prompts per subject (backgrounds cycle through them)")
    max_subject_chars: int = Field(160, ge=16, le=2000, description="longer descriptions are rejected")
    max_scene_chars: int = Field(160, ge=16, le=2000)
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="LLM sampling temperature; 0 = greedy")
    max_new_tokens: int = Field(256, ge=16, le=8192)
    resources: StageResources = Field(default_factory=StageResources, description="transformers backend pool")
    vllm: VllmSection = Field(default_factory=VllmSection)


class CollagesSection(Section):
    """Stage 2: SDXL draws collages of the same subject."""

    prompt_template: str = Field(
        "a collage of several photos of the same {subject}, different angles, plain background",
        description="{subject} = the description",
    )
    negative_prompt: str = "text, watermark, blurry, deformed"
    images_per_subject: int = Field(2, ge=1, le=64)
    size: int = Field(64, ge=64, le=2048, description="side in pixels (multiple of 8)")
    steps: int = Field(2, ge=1, le=500)
    guidance_scale: float = Field(5.0, ge=0.0, le=50.0)
    resources: StageResources = Field(default_factory=StageResources)

    @model_validator(mode="after")
    def _check(self) -> CollagesSection:
        if self.size % 8:
            raise ValueError(f"size must be a multiple of 8, got {self.size}")
        if "{subject}" not in self.prompt_template:
            raise ValueError("prompt_template must contain {subject}")
        return self


class InstancesSection(Section):
    """Stage 3: Grounding DINO boxes + SAM masks; instances failing a geometric check are dropped."""

    box_threshold: float = Field(0.0, ge=0.0, le=1.0, description="Grounding DINO box score threshold")
    text_threshold: float = Field(0.0, ge=0.0, le=1.0, description="Grounding DINO token score threshold")
    min_area: float = Field(0.02, ge=0.0, le=1.0, description="smallest box area / image area")
    max_area: float = Field(0.5, ge=0.0, le=1.0, description="largest box area / image area")
    border_margin: float = Field(
        0.01, ge=0.0, le=0.5, description="a box within this fraction of the side of an edge is cut by the border"
    )
    max_overlap: float = Field(0.3, ge=0.0, le=1.0, description="IoU with a better box above which a box is dropped")
    min_mask_fill: float = Field(0.1, ge=0.0, le=1.0, description="smallest mask area / box area")
    max_per_image: int = Field(4, ge=1, le=64, description="instances kept per collage, best first")
    max_detections: int = Field(
        32, ge=1, le=900, description="best boxes per collage given to SAM (its cost grows per box)"
    )
    resources: StageResources = Field(default_factory=StageResources)

    @model_validator(mode="after")
    def _check(self) -> InstancesSection:
        if self.max_detections < self.max_per_image:
            raise ValueError(f"max_detections ({self.max_detections}) must be >= max_per_image ({self.max_per_image})")
        if self.min_area > self.max_area:
            raise ValueError(f"min_area ({self.min_area}) must be <= max_area ({self.max_area})")
        return self


class ConsistencySection(Section):
    """Stage 4: CLIP embeddings of the masked instances; only sets whose every pair agrees are kept."""

    threshold: float = Field(0.95, ge=-1.0, le=1.0, description="least CLIP cosine similarity of any pair in a set")
    min_set_size: int = Field(2, ge=2, le=64)
    max_set_size: int = Field(3, ge=2, le=64)
    resources: StageResources = Field(default_factory=StageResources)

    @model_validator(mode="after")
    def _check(self) -> ConsistencySection:
        if self.min_set_size > self.max_set_size:
            raise ValueError(f"min_set_size ({self.min_set_size}) must be <= max_set_size ({self.max_set_size})")
        return self


class BackgroundsSection(Section):
    """Stage 5: each instance pasted on a blank canvas; inpainting paints a new scene around it."""

    size: int = Field(64, ge=64, le=2048, description="canvas side in pixels (multiple of 8)")
    scale_min: float = Field(0.35, gt=0.0, le=1.0, description="subject's longer side / canvas side, lower bound")
    scale_max: float = Field(0.6, gt=0.0, le=1.0)
    canvas_color: tuple[int, int, int] = Field((255, 255, 255), description="the blank canvas (RGB)")
    prompt_template: str = Field("{subject}, {scene}", description="{subject}, {scene} from the LLM")
    negative_prompt: str = "text, watermark, blurry, deformed"
    steps: int = Field(2, ge=1, le=500)
    guidance_scale: float = Field(5.0, ge=0.0, le=50.0)
    resources: StageResources = Field(default_factory=StageResources)

    @model_validator(mode="after")
    def _check(self) -> BackgroundsSection:
        if self.size % 8:
            raise ValueError(f"size must be a multiple of 8, got {self.size}")
        if self.scale_min > self.scale_max:
            raise ValueError(f"scale_min ({self.scale_min}) must be <= scale_max ({self.scale_max})")
        if any(not 0 <= c <= 255 for c in self.canvas_color):
            raise ValueError(f"canvas_color values must be in 0..255, got {self.canvas_color}")
        return self


class StyleSpec(Section):
    instruction: str = Field(..., min_length=1, description="InstructPix2Pix edit instruction")
    caption: str = Field(..., description="caption of a stylized image; {prompt} = its photographic caption")

    @model_validator(mode="after")
    def _check(self) -> StyleSpec:
        if "{prompt}" not in self.caption:
            raise ValueError("caption must contain {prompt}")
        return self


def _default_styles() -> list[StyleSpec]:
    return [
        StyleSpec(instruction="turn it into a watercolor painting", caption="a watercolor painting of {prompt}"),
        StyleSpec(instruction="make it a pencil sketch", caption="a pencil sketch of {prompt}"),
        StyleSpec(instruction="make it an oil painting", caption="an oil painting of {prompt}"),
        StyleSpec(instruction="make it look like a 3D render", caption="a 3D render of {prompt}"),
        StyleSpec(instruction="make it pixel art", caption="pixel art of {prompt}"),
    ]


class StylizeSection(Section):
    """Stage 6: InstructPix2Pix restyles a whole set with one instruction, with some probability."""

    probability: float = Field(0.5, ge=0.0, le=1.0, description="share of sets that are stylized")
    styles: list[StyleSpec] = Field(default_factory=_default_styles, min_length=1)
    steps: int = Field(2, ge=1, le=500)
    guidance_scale: float = Field(5.0, ge=0.0, le=50.0)
    image_guidance_scale: float = Field(1.5, ge=0.0, le=50.0)
    resources: StageResources = Field(default_factory=StageResources)


_ADDED_SECTIONS: dict[str, type[Section]] = {}


def add_stage_section(name: str, section: type[Section]) -> None:
    """Accept ``datagen.<name>`` as the config section of a stage added to the builder from outside the
    project (``datagen.stages.register``). Built-in stages have their fields below."""
    if name in DatagenSection.model_fields or name in _ADDED_SECTIONS:
        raise ValueError(f"datagen.{name} is already a config section")
    if not (isinstance(section, type) and issubclass(section, Section)):
        raise TypeError(f"datagen.{name}: a stage's config section must subclass core.config.base.Section")
    _ADDED_SECTIONS[name] = section


def remove_stage_section(name: str) -> None:
    _ADDED_SECTIONS.pop(name, None)


class DatagenSection(Section):
    """How the builder runs, and one section per stage (``datagen.<stage>``). Sections of stages added
    from outside (``add_stage_section``) are validated by their own class; any other key is an error."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    execution: Literal["pools", "fused"] = Field(
        "pools",
        description="pools: one actor pool per model stage, each sized on its own; fused: one actor pool whose "
        "actors run every image stage with all models resident (one GPU holds them all; no hand-offs between stages)",
    )
    fused: StageResources = Field(default_factory=StageResources, description="the actor pool of execution: fused")
    shard_size: int = Field(2, ge=1, le=100_000, description="subjects per output shard: the unit of resume")
    precision: Literal["auto", "fp32", "fp16", "bf16"] = Field(
        "auto", description="model dtype on GPU actors (auto = fp16); CPU actors always run fp32"
    )
    abort_after_errors: int = Field(
        8, ge=1, le=1_000_000, description="stop early when the first N rows to reach a stage all failed in it"
    )
    progress: bool = Field(True, description="live per-stage progress table (plain log lines when not a terminal)")
    writer: StageResources = Field(default_factory=StageResources, description="tasks writing and compacting shards")
    subjects: SubjectsSection = Field(default_factory=SubjectsSection)
    collages: CollagesSection = Field(default_factory=CollagesSection)
    instances: InstancesSection = Field(default_factory=InstancesSection)
    consistency: ConsistencySection = Field(default_factory=ConsistencySection)
    backgrounds: BackgroundsSection = Field(default_factory=BackgroundsSection)
    stylize: StylizeSection = Field(default_factory=StylizeSection)

    @model_validator(mode="wrap")
    @classmethod
    def _added_sections(cls, data: Any, handler):
        if not isinstance(data, dict):
            return handler(data)
        data, errors = dict(data), []
        for key, value in data.items():
            if key in cls.model_fields:
                continue
            if key not in _ADDED_SECTIONS:
                errors.append(InitErrorDetails(type="extra_forbidden", loc=(key,), input=value))
                continue
            try:
                data[key] = _ADDED_SECTIONS[key].model_validate(value)
            except ValidationError as exc:
                errors += [
                    InitErrorDetails(type=e["type"], loc=(key, *e["loc"]), input=e["input"], ctx=e.get("ctx", {}))
                    for e in exc.errors()
                ]
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        for key, section in _ADDED_SECTIONS.items():
            data.setdefault(key, section())
        return handler(data)
