"""The model deployments: JeDi personalization and text-to-image with fine-tuned subjects.

Both share one shape (``BatchedModel``):

- **Batching.** ``@serve.batch`` collects up to ``batching.max_batch_size`` requests for at most
  ``batching.wait_timeout_s``; the batch is split into groups of same-shaped jobs
  (``Job.batch_key``) and each group is one pipeline call with one generator per image, so a
  request's images do not depend on what else was in the batch.
- **Cancellation.** A caller that goes away (client disconnect, gateway timeout) cancels its Serve
  request; the ticket is flagged and the pipeline's step callback stops the run as soon as *every*
  request of the group has left, so abandoned work frees the accelerator within one step.
- **Failures are values.** Bad parameters the pipeline itself rejects (its ``ValueError`` names the
  argument) come back as ``JobFailure`` for that group only; the rest of the batch is unaffected.

Fine-tuned subjects are loaded per replica through ``@serve.multiplexed`` (LRU of
``serving.subjects_per_replica``); the gateway routes a subject's requests with
``multiplexed_model_id`` to replicas that already hold it. A subject is loaded and drawn through the
subject contract (``core.subject_pipeline``), which renders the prompts with its tokens and applies
its method's inference step (CoRe's test-time optimization, reported as ``tto_steps``).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import numpy as np
import torch
from ray import serve

from core import zoo
from core.config import S3JediConfig
from core.logs import get_logger
from core.paths import s3jedi_home
from core.subject_pipeline import SubjectPipeline
from core.subjects import SubjectNotFoundError, SubjectStore
from serving.jobs import Drawn, GenerateJob, JobFailure, JobResult, PersonalizeJob, Ticket
from serving.metrics import ModelMetrics

log = get_logger("serving.models")

# Pipeline argument names (as their ValueErrors start) → the API field a client has to change.
PIPELINE_FIELDS = {
    "reference_images": "references",
    "reference_captions": "references.caption",
    "prompt": "prompts",
    "num_images_per_prompt": "images_per_prompt",
    "num_inference_steps": "steps",
}


class RunCancelled(Exception):
    """Raised from the step callback when nobody is waiting for the run any more."""


def resolve_device(cfg: S3JediConfig) -> tuple[str, torch.dtype]:
    device = cfg.serving.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype_name = cfg.serving.dtype
    if dtype_name == "auto":
        dtype_name = "float16" if device == "cuda" else "float32"
    return device, getattr(torch, dtype_name)


def subject_store(cfg: S3JediConfig) -> SubjectStore:
    home = cfg.home or s3jedi_home()
    return SubjectStore(cfg.serving.subjects_store or home / "subjects", cache_dir=home / "cache" / "subjects")


def failure_from(exc: Exception) -> JobFailure:
    if isinstance(exc, SubjectNotFoundError):  # its message names the store; clients need not see that
        return JobFailure(404, "subject_id", "subject_id: no such subject on this server")
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return JobFailure(503, None, "the model ran out of accelerator memory; retry with fewer or smaller images")
    message = str(exc)
    name = message.split(":", 1)[0].strip()
    return JobFailure(422, PIPELINE_FIELDS.get(name, name if name.isidentifier() else None), message)


def to_uint8(images: np.ndarray) -> list[np.ndarray]:
    return list((np.clip(images, 0.0, 1.0) * 255.0).round().astype(np.uint8))


class BatchedModel:
    """Batching, cancellation and bookkeeping shared by the model deployments."""

    model_ref: str

    def _setup(self, cfg: S3JediConfig, pipe) -> None:
        self.cfg = cfg
        self.pipe = pipe
        pipe.set_progress_bar_config(disable=True)
        self.metrics = ModelMetrics()
        self.stats: Counter[str] = Counter()
        self._waiting = 0
        # Applied per instance so the sizes come from the config (and each deployment has its own queue).
        batching = cfg.serving.batching
        self._batch = serve.batch(max_batch_size=batching.max_batch_size, batch_wait_timeout_s=batching.wait_timeout_s)(
            self._run_batch
        )

    def _info(self, pipe) -> dict:
        device, dtype = resolve_device(self.cfg)
        return {
            "model": self.model_ref,
            "device": device,
            "dtype": str(dtype).removeprefix("torch."),
            "native_size": pipe.unet.config.sample_size * pipe.vae_scale_factor,
            "torch_threads": torch.get_num_threads(),
            "stats": dict(self.stats),
        }

    async def _submit(self, job) -> JobResult | JobFailure:
        ticket = Ticket(job)
        self.stats["requests"] += 1
        self._waiting += 1
        self.metrics.queue_length.set(self._waiting)
        try:
            return await self._batch(ticket)
        except asyncio.CancelledError:
            ticket.cancelled.set()
            self.stats["cancelled_requests"] += 1
            raise
        finally:
            if not ticket.started:  # dropped by Serve before its batch ran
                self._waiting -= 1
                self.metrics.queue_length.set(self._waiting)

    async def _run_batch(self, tickets: list[Ticket]) -> list[JobResult | JobFailure]:
        for ticket in tickets:
            ticket.started = True
        self._waiting -= len(tickets)
        self.metrics.queue_length.set(self._waiting)
        self.metrics.batch_size.observe(len(tickets))
        self.stats["batches"] += 1
        self.stats["largest_batch"] = max(self.stats["largest_batch"], len(tickets))
        groups: dict[tuple, list[Ticket]] = {}
        for ticket in tickets:
            groups.setdefault(ticket.job.batch_key(), []).append(ticket)
        outcomes: dict[int, JobResult | JobFailure] = {}
        for group in groups.values():
            live = [t for t in group if not t.cancelled.is_set()]
            if not live:
                continue
            start = time.perf_counter()
            try:
                pipe = await self._pipeline_for(live[0].job)
                per_job = await asyncio.to_thread(self._run, pipe, live, self._step_callback(live))
            except RunCancelled:
                self.stats["cancelled_runs"] += 1
                self.metrics.cancelled.inc()
                continue
            except (ValueError, LookupError, torch.cuda.OutOfMemoryError) as exc:
                failure = failure_from(exc)
                outcomes.update({id(t): failure for t in live})
                continue
            seconds = time.perf_counter() - start
            for ticket, drawn in zip(live, per_job, strict=True):
                outcomes[id(ticket)] = JobResult(
                    drawn.images, drawn.prompts, ticket.job.image_seeds(), len(tickets), seconds, drawn.tto_steps
                )
                self.stats["images"] += len(drawn.images)
        cancelled = JobFailure(499, None, "request cancelled")
        return [outcomes.get(id(t), cancelled) for t in tickets]

    def _step_callback(self, tickets: list[Ticket]):
        def on_step_end(pipe, step, timestep, tensors):
            self.stats["steps"] += 1
            if all(t.cancelled.is_set() for t in tickets):
                raise RunCancelled
            return tensors

        return on_step_end

    @staticmethod
    def _images_and_generators(tickets: list[Ticket]) -> tuple[list[str], list[torch.Generator]]:
        prompts = [p for t in tickets for p in t.job.image_prompts()]
        generators = [torch.Generator().manual_seed(s) for t in tickets for s in t.job.image_seeds()]
        return prompts, generators

    @staticmethod
    def _split(images: list[np.ndarray], prompts: list[str], tickets: list[Ticket], tto_steps: int = 0) -> list[Drawn]:
        out, start = [], 0
        for t in tickets:
            end = start + t.job.num_images
            out.append(Drawn(images[start:end], prompts[start:end], tto_steps))
            start = end
        return out


@serve.deployment(name="Personalizer")
class Personalizer(BatchedModel):
    """JeDi: reference photos + prompts → images of the subject, no fine-tuning."""

    def __init__(self, config: dict):
        cfg = S3JediConfig.model_validate(config)
        device, dtype = resolve_device(cfg)
        self.model_ref = cfg.models.jedi
        self._setup(cfg, zoo.load("jedi", cfg.models.jedi, home=cfg.home, device=device, dtype=dtype))
        log.info("personalizer ready", model=self.model_ref, device=device, max_references=self.pipe.max_references)

    async def info(self) -> dict:
        return {**self._info(self.pipe), "max_references": self.pipe.max_references}

    async def personalize(self, job: PersonalizeJob) -> JobResult | JobFailure:
        return await self._submit(job)

    async def _pipeline_for(self, job: PersonalizeJob):
        return self.pipe

    def _run(self, pipe, tickets: list[Ticket], callback) -> list[Drawn]:
        job: PersonalizeJob = tickets[0].job  # shapes and scalar settings are shared (batch_key)
        prompts, generators = self._images_and_generators(tickets)
        # One reference set per request, with that request's prompts: one call serves different
        # subjects, and joint targets draw a request's images together (never across requests).
        out = pipe(
            [t.job.references for t in tickets],
            [t.job.image_prompts() for t in tickets],
            reference_captions=[t.job.captions for t in tickets],
            num_images_per_prompt=1,
            num_inference_steps=job.steps,
            guidance=job.guidance,
            guidance_scale=job.guidance_scale,
            image_guidance_scale=job.image_guidance_scale,
            joint_targets=job.joint_targets,
            negative_prompt=job.negative_prompt,
            height=job.height,
            width=job.width,
            generator=generators,
            output_type="np",
            callback_on_step_end=callback,
        )
        return self._split(to_uint8(out.images), prompts, tickets)


@serve.deployment(name="Generator")
class Generator(BatchedModel):
    """Text-to-image with the base model, or with a fine-tuned subject from the subject store."""

    def __init__(self, config: dict):
        cfg = S3JediConfig.model_validate(config)
        self.device, self.dtype = resolve_device(cfg)
        self.model_ref = cfg.models.sd
        self.store = subject_store(cfg)
        self._setup(cfg, self._load_base(cfg))

        async def load_subject(subject_id: str):  # a plain function: Serve keeps its LRU on it
            return await asyncio.to_thread(self._subject_pipeline, subject_id)

        self.subject_pipeline = serve.multiplexed(max_num_models_per_replica=cfg.serving.subjects_per_replica)(
            load_subject
        )
        log.info("generator ready", model=self.model_ref, device=self.device, subjects=self.store.uri)

    def _load_base(self, cfg: S3JediConfig):
        return zoo.load("sd", cfg.models.sd, home=cfg.home, device=self.device, dtype=self.dtype)

    def _subject_pipeline(self, subject_id: str) -> SubjectPipeline:
        card = self.store.card(subject_id)
        if card.base_model != self.model_ref:
            raise ValueError(
                f"subject_id: {subject_id!r} was trained on base_model {card.base_model!r}, "
                f"this server generates with models.sd {self.model_ref!r}"
            )
        subject = SubjectPipeline.load(self.store.local_dir(subject_id), self._load_base(self.cfg))
        self.stats["subjects_loaded"] += 1
        log.info("subject loaded", subject_id=subject_id, method=card.method)
        return subject

    async def info(self) -> dict:
        return self._info(self.pipe)

    async def generate(self, job: GenerateJob) -> JobResult | JobFailure:
        return await self._submit(job)

    async def _pipeline_for(self, job: GenerateJob):
        return self.pipe if job.subject_id is None else await self.subject_pipeline(job.subject_id)

    def _run(self, pipe, tickets: list[Ticket], callback) -> list[Drawn]:
        job: GenerateJob = tickets[0].job
        negatives = [t.job.negative_prompt for t in tickets for _ in range(t.job.num_images)]
        if isinstance(pipe, SubjectPipeline):
            drawing = pipe.draw(
                [p for t in tickets for p in t.job.image_prompts()],
                [s for t in tickets for s in t.job.image_seeds()],
                settings=self.cfg.finetune,
                steps=job.steps,
                guidance_scale=job.guidance_scale,
                height=job.height,
                width=job.width,
                negative_prompts=negatives,
                output_type="np",
                callback=callback,
            )
            if drawing.tto_steps:
                self.stats["tto_steps"] += drawing.tto_steps * len(set(drawing.prompts))
            return self._split(to_uint8(np.stack(drawing.images)), drawing.prompts, tickets, drawing.tto_steps)
        prompts, generators = self._images_and_generators(tickets)
        out = pipe(
            prompt=prompts,
            negative_prompt=negatives,
            num_inference_steps=job.steps,
            guidance_scale=job.guidance_scale,
            height=job.height,
            width=job.width,
            generator=generators,
            output_type="np",
            callback_on_step_end=callback,
        )
        return self._split(to_uint8(out.images), prompts, tickets)
