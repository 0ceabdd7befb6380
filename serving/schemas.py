"""Request and response models of the HTTP API.

Request models are built from the configured limits (``make_request_models``), so the OpenAPI
document at ``/docs`` states the limits this server enforces, clients can validate before sending,
and schema fuzzing explores exactly the boundaries that matter. Unknown fields are errors, so a
misspelt parameter is reported instead of silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import UploadFile
from pydantic import BaseModel, ConfigDict, Field

from core.config.jedi import GuidanceMode
from core.config.serving import LimitsConfig
from core.subjects import SUBJECT_ID_MAX_LENGTH, SUBJECT_ID_PATTERN

MAX_SEED = 2**53 - 1
"""Seeds stay below 2^53: JSON numbers above it lose digits in JavaScript (the demo page) and in any
client that parses numbers as doubles, so a seed read off a reply would not reproduce its image."""


@dataclass(frozen=True)
class RequestModels:
    PersonalizeRequest: type[BaseModel]
    PersonalizeUpload: type[BaseModel]
    GenerateRequest: type[BaseModel]


def make_request_models(limits: LimitsConfig, max_references: int, max_timeout_s: float) -> RequestModels:
    Text = Annotated[str, Field(max_length=limits.max_prompt_chars)]

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")

        prompts: list[Text] = Field(
            ..., min_length=1, max_length=limits.max_prompts, description="one or more prompts (each a list item)"
        )
        images_per_prompt: int = Field(1, ge=1, le=limits.max_images_per_prompt)
        steps: int | None = Field(None, ge=1, le=limits.max_steps, description="denoising steps; default from config")
        guidance_scale: float | None = Field(
            None, ge=0.0, le=limits.max_guidance_scale, allow_inf_nan=False, description="text guidance"
        )
        negative_prompt: Text = ""
        seed: int | None = Field(
            None, ge=0, le=MAX_SEED, description="image k of the response uses seed + k; default: random"
        )
        height: int | None = Field(None, ge=8, le=limits.max_side, multiple_of=8, description="default: model's own")
        width: int | None = Field(None, ge=8, le=limits.max_side, multiple_of=8, description="default: model's own")
        timeout_s: float | None = Field(
            None,
            gt=0.0,
            le=max_timeout_s,
            allow_inf_nan=False,
            description="give up (504, work cancelled) after this many seconds; default and maximum: the server's",
        )

    class PersonalizeOptions(Options):
        guidance: GuidanceMode | None = Field(
            None,
            description="paper (Eq. 3: one scale, image_guidance_scale; guidance_scale must be left out), "
            "paper-unknown, or decomposed (image_guidance_scale and a separate text guidance_scale); "
            "default from config",
        )
        image_guidance_scale: float | None = Field(
            None, ge=0.0, le=limits.max_guidance_scale, allow_inf_nan=False, description="JeDi image guidance λ"
        )
        joint_targets: bool | None = Field(
            None,
            description="draw this request's images as members of shared sets with the references (they see each "
            "other; K + B image passes per step instead of B·(K + 1)); default from config",
        )

    class ReferenceImage(BaseModel):
        model_config = ConfigDict(extra="forbid")

        image: str = Field(
            ...,
            description=f"base64 (or a data: URL) of a {'/'.join(limits.image_formats)} file "
            f"of at most {limits.max_image_bytes} bytes and {limits.max_image_pixels} pixels",
        )
        caption: Text = ""

    class PersonalizeRequest(PersonalizeOptions):
        """Finetuning-free personalization: reference photos of one subject + prompts."""

        references: list[ReferenceImage] = Field(..., min_length=1, max_length=max_references)

    class PersonalizeUpload(PersonalizeOptions):
        """The same as ``PersonalizeRequest``, as ``multipart/form-data`` with the photos as files."""

        references: list[UploadFile] = Field(..., min_length=1, max_length=max_references)
        captions: list[Text] = Field([], max_length=max_references, description="none, or one per reference")

    class GenerateRequest(Options):
        """Text-to-image, optionally with a fine-tuned subject; prompts may use {0} for the subject's
        token(s) and {1} for its class word (the DreamBooth prompt convention)."""

        subject_id: str | None = Field(None, max_length=SUBJECT_ID_MAX_LENGTH, pattern=SUBJECT_ID_PATTERN)

    return RequestModels(PersonalizeRequest, PersonalizeUpload, GenerateRequest)


class GeneratedImage(BaseModel):
    image: str = Field(..., description="base64 PNG")
    prompt: str = Field(..., description="the prompt as the model saw it")
    seed: int


class Parameters(BaseModel):
    steps: int
    guidance_scale: float | None
    guidance: str | None = None
    image_guidance_scale: float | None = None
    joint_targets: bool | None = None
    negative_prompt: str
    height: int
    width: int
    seed: int


class GenerationResponse(BaseModel):
    images: list[GeneratedImage]
    model: str
    subject_id: str | None = None
    parameters: Parameters
    batch_size: int = Field(..., description="requests that shared this request's @serve.batch call")
    tto_steps: int = Field(
        0, description="test-time optimization steps the subject's method ran per prompt before drawing (CoRe)"
    )
    run_seconds: float = Field(..., description="the pipeline call that made these images")
    seconds: float = Field(..., description="time in the gateway, decoding to encoding (includes queueing)")


class SubjectInfo(BaseModel):
    subject_id: str
    method: str
    tokens: list[str]
    class_word: str
    prompt_template: str


class ModelsResponse(BaseModel):
    personalize: dict
    generate: dict
    subjects: list[SubjectInfo]
    limits: dict


class ExampleSet(BaseModel):
    name: str
    description: str
    references: list[str] = Field(..., description="PNG data URLs, ready to send as references[i].image")
    prompts: list[str] = Field(..., description="prompts that suit the set")


class ExamplesResponse(BaseModel):
    examples: list[ExampleSet]


class Health(BaseModel):
    status: str
    deployments: dict | None = None
