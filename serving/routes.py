"""The route table: every route of the API, declared once with what guards it.

A route declares whether it needs an API key (``auth``), which rate-limit bucket it draws from
(``rate_limit``), which model deployment it spends time on (``spends``), its request model (a name in
``serving.schemas.RequestModels``) and content type, and its handler. ``serving.api`` builds the
FastAPI app and the guard middleware from this table alone, so adding an endpoint is one entry here
(plus its request model and the gateway method it calls) and a route that spends model time cannot
exist without a rate limit: ``Route`` refuses it when the table is built, and a route that reaches a
model without declaring ``spends`` is answered 500 before any work is queued (``check_spending``, run
by the gateway's one path to a model).

Handlers are plain ``async (gw, request, body) -> Response`` functions; ``serving.api`` gives each one
the signature FastAPI needs (the request model is made at start-up from the configured limits).
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from enum import StrEnum

from fastapi import Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel

from core.logs import get_logger
from serving.errors import ApiError
from serving.schemas import ExamplesResponse, GenerationResponse, Health, ModelsResponse

log = get_logger("serving.routes")


class RateClass(StrEnum):
    """Rate-limit buckets. ``generation``: ``serving.auth.rate_limit_per_minute`` / ``rate_limit_burst``
    per API key (per client address in dev mode)."""

    GENERATION = "generation"


class Deployment(StrEnum):
    """Model deployments whose time a route spends."""

    PERSONALIZER = "personalizer"
    GENERATOR = "generator"


Handler = Callable[..., Awaitable[Response | BaseModel]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    response: type[BaseModel] | None
    auth: bool = True
    """A bearer API key is required (checked before the body is read)."""
    rate_limit: RateClass | None = None
    spends: Deployment | None = None
    request: str | None = None
    """The body's model: an attribute name of ``serving.schemas.RequestModels``."""
    content_type: str | None = None
    """The only accepted request content type (415 otherwise)."""
    extra_responses: dict = field(default_factory=dict)
    in_schema: bool = True

    def __post_init__(self) -> None:
        if self.spends is not None and self.rate_limit is None:
            raise ValueError(f"route {self.method} {self.path}: spends {self.spends} time but declares no rate_limit")
        if self.spends is not None and not self.auth:
            raise ValueError(f"route {self.method} {self.path}: spends {self.spends} time without an API key")
        if (self.request is None) != (self.content_type is None):
            raise ValueError(f"route {self.method} {self.path}: a request model needs its content type and back")


# -- rendering a generation --------------------------------------------------------------------------
def as_json(finished) -> GenerationResponse:
    images = [
        im.model_copy(update={"image": base64.b64encode(png).decode()})
        for im, png in zip(finished.meta.images, finished.pngs, strict=True)
    ]
    return finished.meta.model_copy(update={"images": images})


def as_multipart(finished) -> Response:
    """``multipart/mixed``: a JSON part (the response without image data), then one PNG part per image."""
    boundary = secrets.token_hex(16)
    meta = finished.meta.model_dump(mode="json")
    for image in meta["images"]:
        del image["image"]
    parts = [("application/json", json.dumps(meta).encode(), "")]
    parts += [
        ("image/png", png, f'Content-Disposition: attachment; filename="image-{i}.png"\r\n')
        for i, png in enumerate(finished.pngs)
    ]
    chunks = []
    for content_type, data, extra in parts:
        chunks += [f"--{boundary}\r\nContent-Type: {content_type}\r\n{extra}\r\n".encode(), data, b"\r\n"]
    chunks.append(f"--{boundary}--\r\n".encode())
    return Response(b"".join(chunks), media_type=f"multipart/mixed; boundary={boundary}")


def render(request: Request, finished) -> Response:
    if "multipart/mixed" in request.headers.get("accept", ""):
        return as_multipart(finished)
    return JSONResponse(as_json(finished).model_dump(mode="json"))


# -- handlers ----------------------------------------------------------------------------------------
async def index(gw, request: Request) -> Response:
    return RedirectResponse(str(request.url_for("demo", path="/")))


async def healthz(gw, request: Request) -> Health:
    return Health(status="ok")


async def readyz(gw, request: Request) -> Response:
    ready, deployments = await asyncio.to_thread(gw.readiness)
    body = Health(status="ready" if ready else "not ready", deployments=deployments)
    return JSONResponse(body.model_dump(mode="json"), 200 if ready else 503)


async def list_models(gw, request: Request) -> ModelsResponse:
    return await asyncio.to_thread(gw.models)


async def list_examples(gw, request: Request) -> ExamplesResponse:
    return gw.examples


async def personalize(gw, request: Request, body) -> Response:
    references = [(f"references[{i}].image", ref.image) for i, ref in enumerate(body.references)]
    return render(request, await gw.personalize(body, references, [ref.caption for ref in body.references]))


async def personalize_upload(gw, request: Request, body) -> Response:
    if body.captions and len(body.captions) != len(body.references):
        raise ApiError(
            422,
            "captions",
            f"captions: {len(body.captions)} captions for {len(body.references)} references (give none or one each)",
            limit=len(body.references),
        )
    references = [
        (f"references[{i}]", await upload.read(gw.limits.max_image_bytes + 1))
        for i, upload in enumerate(body.references)
    ]
    captions = list(body.captions) or [""] * len(references)
    return render(request, await gw.personalize(body, references, captions))


async def generate(gw, request: Request, body) -> Response:
    return render(request, await gw.generate(body))


JSON = "application/json"
FORM = "multipart/form-data"

ROUTES: tuple[Route, ...] = (
    Route("GET", "/", index, "the demo page", None, auth=False, in_schema=False),
    Route("GET", "/healthz", healthz, "the gateway is up", Health, auth=False),
    Route(
        "GET",
        "/readyz",
        readyz,
        "model deployments are loaded",
        Health,
        auth=False,
        extra_responses={503: {"model": Health}},
    ),
    Route("GET", "/v1/models", list_models, "models, limits and fine-tuned subjects of this server", ModelsResponse),
    Route("GET", "/v1/examples", list_examples, "example reference sets offered by this server", ExamplesResponse),
    Route(
        "POST",
        "/v1/personalize",
        personalize,
        "personalize: reference photos (base64) + prompts → images of the subject",
        GenerationResponse,
        rate_limit=RateClass.GENERATION,
        spends=Deployment.PERSONALIZER,
        request="PersonalizeRequest",
        content_type=JSON,
    ),
    Route(
        "POST",
        "/v1/personalize/upload",
        personalize_upload,
        "personalize with the photos as multipart/form-data files",
        GenerationResponse,
        rate_limit=RateClass.GENERATION,
        spends=Deployment.PERSONALIZER,
        request="PersonalizeUpload",
        content_type=FORM,
    ),
    Route(
        "POST",
        "/v1/generate",
        generate,
        "text-to-image, optionally with a fine-tuned subject (subject_id)",
        GenerationResponse,
        rate_limit=RateClass.GENERATION,
        spends=Deployment.GENERATOR,
        request="GenerateRequest",
        content_type=JSON,
    ),
)
FRAMEWORK_PATHS = ("/docs", "/openapi.json")
"""Served by FastAPI itself (no key: they describe the API, they run nothing)."""
GUARDED_PREFIX = "/v1/"
"""Unknown paths under it still need a key, so probing for routes learns nothing without one."""


current: ContextVar[Route | None] = ContextVar("current_route", default=None)
"""The route of the request being handled (set by the guard middleware, read where model time is spent)."""


def check_spending(deployment: Deployment) -> None:
    """Fail closed when a request reaches a model through a route that does not declare it: such a
    route would have skipped the rate limit."""
    route = current.get()
    if route is None or route.spends != deployment:
        where = f"{route.method} {route.path}" if route else "an undeclared route"
        log.error("model time spent by a route that does not declare it", route=where, deployment=str(deployment))
        raise ApiError(
            500, None, f"internal error: {where} spends {deployment} time but serving.routes does not say so"
        )


def find(path: str) -> Route | None:
    """The route at ``path`` (each path has one method; a wrong method is FastAPI's 405)."""
    return _BY_PATH.get(path)


def needs_key(path: str) -> bool:
    route = find(path)
    return route.auth if route is not None else path.startswith(GUARDED_PREFIX)


_BY_PATH = {r.path: r for r in ROUTES}
if len(_BY_PATH) != len(ROUTES):
    raise ValueError("serving.routes: two routes share a path")
