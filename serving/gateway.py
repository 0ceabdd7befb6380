"""The HTTP ingress deployment: everything between the network and the model replicas.

The gateway authenticates, rate-limits, validates and decodes (on CPU, off the event loop), then
hands a ready job to a model deployment through a ``DeploymentHandle`` and encodes the PNGs that come
back. Model replicas therefore spend their accelerator only on diffusion.

Back-pressure: a model deployment whose queue at this gateway is full (``max_queued_requests``)
raises ``BackPressureError``, answered with 503 and ``Retry-After``; the Serve proxy does the same for
the gateway's own queue (``backpressure_config``). Deadlines: every request has one
(``timeout_s``, capped by ``serving.request_timeout_s``); when it passes, or the client disconnects,
the downstream request is cancelled and the model stops that run at its next step.
"""

from __future__ import annotations

import asyncio
import io
import secrets
import time
from dataclasses import dataclass

import numpy as np
from PIL import Image
from ray import serve
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle

from core.config import S3JediConfig
from core.jedi.guidance import check_guidance
from core.jedi.images import resize_center_crop
from core.logs import get_logger
from core.subjects import SubjectCard, SubjectNotFoundError, validate_subject_id
from serving.auth import KeyRing, RateLimiter, check_dev_mode
from serving.errors import ApiError
from serving.examples import load_examples
from serving.jobs import GenerateJob, GenerationJob, JobFailure, JobResult, PersonalizeJob
from serving.listeners import serve_listeners
from serving.metrics import GatewayMetrics
from serving.models import subject_store
from serving.routes import Deployment, RateClass, check_spending
from serving.schemas import (
    MAX_SEED,
    ExamplesResponse,
    GeneratedImage,
    GenerationResponse,
    ModelsResponse,
    Parameters,
    SubjectInfo,
)
from serving.uploads import decode_base64, decode_image

log = get_logger("serving.gateway")
MAX_LISTED_SUBJECTS = 500


@dataclass
class Finished:
    """A generation, ready to be written as JSON (base64) or multipart (raw PNGs)."""

    meta: GenerationResponse
    pngs: list[bytes]


def given(value, default):
    return default if value is None else value


def encode_png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


@serve.deployment(name="Gateway")
@serve.ingress()
class Gateway:
    def __init__(self, personalizer: DeploymentHandle, generator: DeploymentHandle, config: dict):
        self.cfg = S3JediConfig.model_validate(config)
        serving = self.cfg.serving
        self.limits = serving.limits
        self.keys = KeyRing.load(serving.auth)
        # Here too, not only in `s3jedi serve`: a Serve config file deployed as is reaches this first.
        check_dev_mode(self.keys, serving.host, serve_listeners() if self.keys.dev_mode else None)
        (log.warning if self.keys.dev_mode else log.info)(self.keys.describe())
        self.limiters = {
            RateClass.GENERATION: RateLimiter(serving.auth.rate_limit_per_minute, serving.auth.rate_limit_burst)
        }
        self.personalizer = personalizer
        self.generator = generator
        self.store = subject_store(self.cfg)
        self.metrics = GatewayMetrics()

    async def __serve_build_asgi_app__(self):
        """Built once the model replicas answer: the request schema needs the model's max_references."""
        from serving.api import build_api

        self.personalizer_info = await self.personalizer.info.remote()
        self.generator_info = await self.generator.info.remote()
        self.max_references = min(self.limits.max_references, self.personalizer_info["max_references"])
        for name, info in (("personalizer", self.personalizer_info), ("generator", self.generator_info)):
            side = self.cfg.serving.defaults.size or info["native_size"]
            if side > self.limits.max_side:
                raise ValueError(
                    f"serving.limits.max_side: {self.limits.max_side} is below the {name}'s default size {side}; "
                    "raise the limit or set serving.defaults.size"
                )
        self.examples = ExamplesResponse(
            examples=load_examples(
                self.cfg.serving.examples, self.cfg.seed, self.personalizer_info["native_size"], self.max_references
            )
        )
        return build_api(self)

    # -- requests ------------------------------------------------------------------------------
    def _job_fields(self, options, native_size: int) -> dict:
        n = len(options.prompts) * options.images_per_prompt
        limit = self.limits.max_images_per_request
        if n > limit:
            raise ApiError(
                422,
                "images_per_prompt",
                f"images_per_prompt: {len(options.prompts)} prompts × {options.images_per_prompt} = {n} images, "
                f"limit is max_images_per_request {limit}",
                limit=limit,
            )
        defaults = self.cfg.serving.defaults
        side = defaults.size or native_size
        return dict(
            prompts=list(options.prompts),
            images_per_prompt=options.images_per_prompt,
            steps=options.steps or defaults.steps,
            guidance_scale=given(options.guidance_scale, defaults.guidance_scale),
            negative_prompt=options.negative_prompt,
            seed=secrets.randbelow(MAX_SEED + 1) if options.seed is None else options.seed,
            height=options.height or side,
            width=options.width or side,
        )

    async def personalize(self, options, references: list[tuple[str, bytes | str]], captions: list[str]) -> Finished:
        """``references``: (field name, encoded bytes, or base64 text) per reference photo."""
        start = time.perf_counter()
        fields = self._job_fields(options, self.personalizer_info["native_size"])
        arrays = await asyncio.to_thread(self._decode_references, references, fields["height"], fields["width"])
        job = PersonalizeJob(**{**fields, **self._guidance(options)}, references=arrays, captions=captions)
        result = await self._call(Deployment.PERSONALIZER, self.personalizer.personalize, job, options.timeout_s, start)
        return await self._finish("/v1/personalize", job, result, self.cfg.models.jedi, None, start)

    def _guidance(self, options) -> dict:
        """JeDi's guidance settings of a request (config defaults for what it leaves out), checked by the
        pipeline's own rule: the paper's guidance has one scale and refuses a text guidance_scale."""
        defaults = self.cfg.serving.defaults
        guidance = options.guidance or defaults.guidance
        text = options.guidance_scale
        if guidance == "decomposed":
            text = given(text, defaults.guidance_scale)
        lam = given(options.image_guidance_scale, defaults.image_guidance_scale)
        try:
            text = check_guidance(guidance, lam, text)
        except ValueError as exc:
            raise ApiError(422, str(exc).split(":", 1)[0], str(exc)) from None
        return {
            "guidance": guidance,
            "guidance_scale": text,
            "image_guidance_scale": lam,
            "joint_targets": given(options.joint_targets, defaults.joint_targets),
        }

    def _decode_references(self, references, height: int, width: int) -> list[np.ndarray]:
        arrays = []
        for field, data in references:
            if isinstance(data, str):
                data = decode_base64(data, field, self.limits.max_image_bytes)
            image = decode_image(data, field, self.limits)
            arrays.append(np.asarray(resize_center_crop(image, height, width)))
        return arrays

    async def generate(self, request) -> Finished:
        start = time.perf_counter()
        fields = self._job_fields(request, self.generator_info["native_size"])
        handle = self.generator
        if request.subject_id is not None:  # a known subject with a valid card; its replica renders the prompts
            await asyncio.to_thread(self._card, request.subject_id)
            handle = handle.options(multiplexed_model_id=request.subject_id)
        job = GenerateJob(**fields, subject_id=request.subject_id)
        result = await self._call(Deployment.GENERATOR, handle.generate, job, request.timeout_s, start)
        return await self._finish("/v1/generate", job, result, self.cfg.models.sd, request.subject_id, start)

    def _card(self, subject_id: str) -> SubjectCard:
        try:
            return self.store.card(validate_subject_id(subject_id))
        except SubjectNotFoundError:
            raise ApiError(404, "subject_id", f"subject_id: no subject {subject_id!r} on this server") from None
        except ValueError as exc:  # an invalid card in the store: the operator's problem, logged for them
            log.warning("unreadable subject card", subject_id=subject_id, error=str(exc))
            raise ApiError(422, "subject_id", f"subject_id: {subject_id!r} has an invalid card") from None

    async def _call(self, deployment: Deployment, method, job, timeout_s: float | None, start: float) -> JobResult:
        """Run ``job`` on a model deployment (``method``: a handle's method) within the request's deadline
        (counted from ``start``). The only way requests reach a model: it first checks that the route
        being served declares this spending (and so its rate limit)."""
        check_spending(deployment)
        response = method.remote(job)
        timeout = min(timeout_s or self.cfg.serving.request_timeout_s, self.cfg.serving.request_timeout_s)
        retry = {"Retry-After": str(self.cfg.serving.retry_after_s)}
        try:
            outcome = await asyncio.wait_for(response, max(0.0, timeout - (time.perf_counter() - start)))
        except TimeoutError:
            response.cancel()
            raise ApiError(
                504,
                "timeout_s",
                f"timeout_s: not finished within {timeout:g} s; the work was cancelled",
                limit=timeout,
            ) from None
        except asyncio.CancelledError:  # the client went away: stop the model's work too
            response.cancel()
            raise
        except BackPressureError:
            queued = getattr(self.cfg.serving, deployment).max_queued_requests
            field = f"serving.{deployment}.max_queued_requests"
            raise ApiError(
                503,
                field,
                f"{field}: server busy, {queued} requests already queued; retry after {retry['Retry-After']} s",
                limit=queued,
                headers=retry,
            ) from None
        if isinstance(outcome, JobFailure):
            raise ApiError(
                outcome.status, outcome.field, outcome.message, headers=retry if outcome.status == 503 else None
            )
        return outcome

    async def _finish(
        self, route: str, job: GenerationJob, result: JobResult, model: str, subject_id: str | None, start: float
    ) -> Finished:
        pngs = await asyncio.to_thread(lambda: [encode_png(im) for im in result.images])
        self.metrics.images.inc(len(pngs), tags={"path": route})
        meta = GenerationResponse(
            images=[
                GeneratedImage(image="", prompt=p, seed=s) for p, s in zip(result.prompts, result.seeds, strict=True)
            ],
            model=model,
            subject_id=subject_id,
            parameters=Parameters(
                steps=job.steps,
                guidance_scale=job.guidance_scale,
                guidance=getattr(job, "guidance", None),
                image_guidance_scale=getattr(job, "image_guidance_scale", None),
                joint_targets=getattr(job, "joint_targets", None),
                negative_prompt=job.negative_prompt,
                height=job.height,
                width=job.width,
                seed=job.seed,
            ),
            batch_size=result.batch_size,
            tto_steps=result.tto_steps,
            run_seconds=round(result.run_s, 4),
            seconds=round(time.perf_counter() - start, 4),
        )
        return Finished(meta, pngs)

    # -- information ---------------------------------------------------------------------------
    def models(self) -> ModelsResponse:
        subjects = []
        for subject_id in self.store.ids()[:MAX_LISTED_SUBJECTS]:
            try:
                card = self.store.card(subject_id)
            except ValueError as exc:  # a broken card must not hide the others
                log.warning("unreadable subject card", subject_id=subject_id, error=str(exc))
                continue
            subjects.append(SubjectInfo(**card.model_dump(include=set(SubjectInfo.model_fields))))
        return ModelsResponse(
            personalize={
                "model": self.cfg.models.jedi,
                "max_references": self.max_references,
                "native_size": self.personalizer_info["native_size"],
            },
            generate={"model": self.cfg.models.sd, "native_size": self.generator_info["native_size"]},
            subjects=subjects,
            limits={**self.limits.model_dump(), "max_references": self.max_references},
        )

    def readiness(self) -> tuple[bool, dict]:
        """Serve's view of the model deployments (HEALTHY = replicas constructed, models loaded)."""
        app = serve.get_replica_context().app_name
        status = serve.status().applications.get(app)
        deployments = {
            name: str(d.status.value if hasattr(d.status, "value") else d.status)
            for name, d in (status.deployments.items() if status else [])
        }
        ready = all(deployments.get(n) == "HEALTHY" for n in ("Personalizer", "Generator"))
        return ready, deployments
