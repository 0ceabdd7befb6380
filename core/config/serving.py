"""Serving (Ray Serve): limits on requests, batching, auth, back-pressure, replicas and autoscaling.

Defaults are the tiny profile on a laptop: small images, few steps, fractional CPUs per replica,
bound to 127.0.0.1. Production profiles raise the limits and give the model replicas GPUs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from core.config.base import Section
from core.config.jedi import JeDiSampling

MiB = 1024 * 1024


class LimitsConfig(Section):
    """Everything a request may ask for. Checked before any image is decoded or any model runs."""

    max_request_bytes: int = Field(16 * MiB, ge=1024, le=1024 * MiB, description="whole HTTP request body")
    max_image_bytes: int = Field(8 * MiB, ge=1, le=512 * MiB, description="one uploaded image, encoded")
    max_image_pixels: int = Field(
        16_777_216, ge=1, le=400_000_000, description="width×height of one uploaded image (decompression bombs)"
    )
    min_image_side: int = Field(
        64, ge=1, le=4096, description="smallest width and height of an uploaded image (tiny ones would be upscaled)"
    )
    image_formats: list[Literal["PNG", "JPEG", "WEBP"]] = Field(
        ["PNG", "JPEG", "WEBP"], min_length=1, description="accepted upload formats (sniffed from the bytes)"
    )
    max_prompt_chars: int = Field(500, ge=1, le=10_000, description="characters per prompt / caption")
    max_prompts: int = Field(4, ge=1, le=64)
    max_references: int = Field(8, ge=1, le=64, description="capped further by the model's max_references")
    max_images_per_prompt: int = Field(4, ge=1, le=64)
    max_images_per_request: int = Field(8, ge=1, le=256, description="prompts × images per prompt")
    max_steps: int = Field(50, ge=1, le=1000)
    max_side: int = Field(256, ge=8, le=4096, description="largest output height/width (a multiple of 8)")
    max_guidance_scale: float = Field(30.0, ge=1.0, le=100.0)


class DefaultsConfig(JeDiSampling):
    """What a request gets for the parameters it leaves out."""

    steps: int = Field(4, ge=1, le=1000)
    guidance_scale: float = Field(
        3.0, ge=0.0, le=100.0, description="text guidance s (generate, and JeDi's decomposed guidance)"
    )
    size: int | None = Field(None, ge=8, le=4096, description="output side; null = the model's native size")


class BatchingConfig(Section):
    max_batch_size: int = Field(8, ge=1, le=256, description="requests collected into one @serve.batch call")
    wait_timeout_s: float = Field(0.05, ge=0.0, le=10.0, description="how long a batch waits to fill up")


class AuthConfig(Section):
    """Bearer API keys. Keys never live in YAML: they come from an environment variable and/or a file
    (a mounted Kubernetes secret). No key configured = dev mode, allowed only on a loopback host."""

    api_keys_env: str = Field("S3JEDI_API_KEYS", min_length=1, description="env var with comma-separated keys")
    api_keys_file: Path | None = Field(None, description="file with one key per line (e.g. a secret mount)")
    rate_limit_per_minute: int = Field(120, ge=1, le=1_000_000, description="generation requests per key per replica")
    rate_limit_burst: int = Field(20, ge=1, le=100_000, description="requests a key may send at once")


class ReplicaConfig(Section):
    """Resources, concurrency limits and autoscaling of one Serve deployment."""

    num_cpus: float = Field(0.5, ge=0.0, le=256.0)
    num_gpus: float = Field(0.0, ge=0.0, le=16.0)
    max_ongoing_requests: int = Field(16, ge=1, le=10_000, description="requests in flight per replica")
    max_queued_requests: int = Field(64, ge=-1, le=100_000, description="queued per caller before 503; -1 = no limit")
    min_replicas: int = Field(1, ge=0, le=1000)
    max_replicas: int = Field(1, ge=1, le=1000, description="> min_replicas switches autoscaling on")
    target_ongoing_requests: float = Field(8.0, gt=0.0, le=10_000.0, description="autoscaling target per replica")

    @model_validator(mode="after")
    def _replicas(self) -> ReplicaConfig:
        if self.max_replicas < max(self.min_replicas, 1):
            raise ValueError(f"max_replicas ({self.max_replicas}) must be >= min_replicas ({self.min_replicas})")
        return self


class GatewayConfig(ReplicaConfig):
    """The HTTP ingress: auth, limits, image decoding. Mostly waiting on the models, so it takes many
    concurrent requests on a small CPU share."""

    num_cpus: float = Field(0.1, ge=0.0, le=256.0)
    max_ongoing_requests: int = Field(256, ge=1, le=10_000, description="requests in flight per replica")
    max_queued_requests: int = Field(512, ge=-1, le=100_000, description="queued per proxy before 503; -1 = no limit")
    target_ongoing_requests: float = Field(64.0, gt=0.0, le=10_000.0, description="autoscaling target per replica")


class ServingConfig(Section):
    app_name: str = Field("s3jedi", min_length=1, pattern=r"^[A-Za-z0-9_-]+$")
    host: str = Field("127.0.0.1", description="HTTP bind address of the Serve proxy")
    port: int = Field(8000, ge=1, le=65535)
    request_timeout_s: float = Field(120.0, gt=0.0, le=3600.0, description="per request, end to end (then 504)")
    retry_after_s: int = Field(2, ge=0, le=3600, description="Retry-After sent with 503 and 429")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = cuda when the replica sees a GPU")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field("auto", description="auto = fp16 on cuda")
    subjects_store: str | None = Field(
        None, description="fine-tuned subjects: dir or URI; null = $S3JEDI_HOME/subjects"
    )
    subjects_per_replica: int = Field(4, ge=1, le=1000, description="LRU size of loaded subjects per replica")
    examples: Literal["toyworld"] | None = Field(
        None, description="reference sets the demo page offers: toyworld = renders of its novel subjects; null = none"
    )
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    defaults: DefaultsConfig = Field(default_factory=DefaultsConfig)
    batching: BatchingConfig = Field(default_factory=BatchingConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    gateway: GatewayConfig = Field(default_factory=GatewayConfig)
    personalizer: ReplicaConfig = Field(default_factory=ReplicaConfig, description="JeDi, /v1/personalize")
    generator: ReplicaConfig = Field(default_factory=ReplicaConfig, description="text-to-image + subjects")

    @model_validator(mode="after")
    def _consistent(self) -> ServingConfig:
        if self.limits.max_side % 8:
            raise ValueError(f"limits.max_side: must be a multiple of 8, got {self.limits.max_side}")
        if self.defaults.steps > self.limits.max_steps:
            raise ValueError(f"defaults.steps: {self.defaults.steps} exceeds limits.max_steps {self.limits.max_steps}")
        for name in ("personalizer", "generator"):
            replica = getattr(self, name)
            if replica.max_ongoing_requests < self.batching.max_batch_size:
                raise ValueError(
                    f"{name}.max_ongoing_requests: {replica.max_ongoing_requests} is below "
                    f"batching.max_batch_size {self.batching.max_batch_size}; batches could never fill"
                )
        return self
