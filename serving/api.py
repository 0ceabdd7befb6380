"""The FastAPI app of the gateway: routes, OpenAPI (``/docs``), the demo page, auth and metrics.

Order of checks on ``/v1/*``: bearer key (401) → rate limit (429) → declared body size (413) — all in
``GuardMiddleware``, before a byte of the body is read — then the streamed body size (413), content type
(415), schema and limits (422), image bytes (400/413/415), then the model. Every failure is the JSON
of ``serving.errors``.

No ``from __future__ import annotations`` here: the request models are created at start-up from the
config, and FastAPI must see them as real objects in the route signatures.
"""

import asyncio
import base64
import json
import secrets
import time
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, File, Request, Security
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.security import HTTPBearer
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving.errors import ApiError, ErrorBody, install_error_handlers
from serving.schemas import GenerationResponse, Health, ModelsResponse, make_request_models

STATIC_DIR = Path(__file__).resolve().parent / "static"
GUARDED_PREFIX = "/v1/"
SPENDING = {"/v1/personalize", "/v1/personalize/upload", "/v1/generate"}
ROUTES = {"/", "/healthz", "/readyz", "/docs", "/openapi.json", "/v1/models", *SPENDING}
ERROR_RESPONSES = {
    status: {"model": ErrorBody, "description": text}
    for status, text in {
        400: "unreadable input (bad base64, corrupt or truncated image, empty file)",
        401: "missing or unknown API key",
        404: "unknown subject_id",
        413: "request, image or pixel count over a limit",
        415: "wrong content type or image format",
        422: "a parameter outside its limits",
        429: "rate limit of this API key",
        503: "queue full: retry after Retry-After seconds",
        504: "timeout_s passed; the work was cancelled",
    }.items()
}
IMAGE_CONTENT = {
    "application/json": {},
    "multipart/mixed": {"schema": {"type": "string", "format": "binary", "description": "JSON part, then PNGs"}},
}


class GuardMiddleware:
    """Auth, rate limit, body size and request metrics for the whole app (pure ASGI: cancellation-safe, no
    buffering). Unauthenticated or over-limit requests are answered before their body is read."""

    def __init__(self, app, gateway):
        self.app = app
        self.gw = gateway

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        path = scope["path"] if scope["path"] in ROUTES else "other"
        status = 499  # stays so if the client disconnects before a response starts

        async def record_send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            headers = dict(scope.get("headers") or [])
            try:
                if scope["path"].startswith(GUARDED_PREFIX):
                    key_id = self.gw.keys.identify(headers.get(b"authorization", b"").decode("latin-1") or None)
                    if scope["path"] in SPENDING:
                        self.gw.limiter.take(key_id)
                receive = self._limit_body(headers, receive)
            except ApiError as exc:
                await exc.response()(scope, receive, record_send)
                return
            await self.app(scope, receive, record_send)
        finally:
            self.gw.metrics.record(path, status, time.perf_counter() - start)

    def _limit_body(self, headers: dict, receive):
        """413 for a declared ``Content-Length`` over the limit at once, else count the body as it
        streams in; the error raised mid-body is an HTTPException, which FastAPI passes through."""
        limit = self.gw.limits.max_request_bytes
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                raise ApiError(400, "content-length", "content-length: not a byte count")
            if int(declared) > limit:
                raise body_too_large(limit)
        seen = 0

        async def counting_receive():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise StarletteHTTPException(413)
            return message

        return counting_receive


def body_too_large(limit: int) -> ApiError:
    return ApiError(413, "body", f"body: the request is larger than max_request_bytes {limit}", limit=limit)


def _require(kind: str):
    def check(request: Request) -> None:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != kind:
            raise ApiError(
                415, "content-type", f"content-type: expected {kind}, got {content_type or 'none'}", limit=kind
            )

    return check


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


def build_api(gw) -> FastAPI:
    limits = gw.limits
    models = make_request_models(limits, gw.max_references, gw.cfg.serving.request_timeout_s)
    PersonalizeRequest, PersonalizeUpload, GenerateRequest = (
        models.PersonalizeRequest,
        models.PersonalizeUpload,
        models.GenerateRequest,
    )
    app = FastAPI(
        title="s3jedi serving",
        version="1",
        description=(
            "Finetuning-free personalization (JeDi) and text-to-image with fine-tuned subjects. "
            f"{gw.keys.describe()}. Limits below are this server's configuration."
        ),
    )
    install_error_handlers(app, body_too_large(limits.max_request_bytes))
    app.add_middleware(GuardMiddleware, gateway=gw)
    bearer = Security(HTTPBearer(auto_error=False, description="an API key of this server"))
    authenticated = [bearer]  # documents the scheme in OpenAPI; GuardMiddleware enforces it
    json_only = Depends(_require("application/json"))
    form_only = Depends(_require("multipart/form-data"))

    @app.get("/", include_in_schema=False)
    async def index(request: Request) -> RedirectResponse:
        return RedirectResponse(str(request.url_for("demo", path="/")))

    app.mount("/demo", StaticFiles(directory=STATIC_DIR, html=True), name="demo")

    @app.get("/healthz", response_model=Health, summary="the gateway is up")
    async def healthz() -> Health:
        return Health(status="ok")

    @app.get(
        "/readyz", response_model=Health, responses={503: {"model": Health}}, summary="model deployments are loaded"
    )
    async def readyz() -> JSONResponse:
        ready, deployments = await asyncio.to_thread(gw.readiness)
        body = Health(status="ready" if ready else "not ready", deployments=deployments)
        return JSONResponse(body.model_dump(mode="json"), 200 if ready else 503)

    @app.get("/v1/models", response_model=ModelsResponse, responses=ERROR_RESPONSES, dependencies=authenticated)
    async def list_models() -> ModelsResponse:
        return await asyncio.to_thread(gw.models)

    @app.post(
        "/v1/personalize",
        response_model=GenerationResponse,
        responses={**ERROR_RESPONSES, 200: {"content": IMAGE_CONTENT}},
        dependencies=[*authenticated, json_only],
        summary="personalize: reference photos (base64) + prompts → images of the subject",
    )
    async def personalize(body: PersonalizeRequest, request: Request) -> Response:
        references = [(f"references[{i}].image", ref.image) for i, ref in enumerate(body.references)]
        finished = await gw.personalize(body, references, [ref.caption for ref in body.references])
        return render(request, finished)

    @app.post(
        "/v1/personalize/upload",
        response_model=GenerationResponse,
        responses={**ERROR_RESPONSES, 200: {"content": IMAGE_CONTENT}},
        dependencies=[*authenticated, form_only],
        summary="personalize with the photos as multipart/form-data files",
    )
    async def personalize_upload(request: Request, body: Annotated[PersonalizeUpload, File()]) -> Response:
        if body.captions and len(body.captions) != len(body.references):
            raise ApiError(
                422,
                "captions",
                f"captions: {len(body.captions)} captions for {len(body.references)} references (give none or one each)",
                limit=len(body.references),
            )
        references = []
        for i, upload in enumerate(body.references):
            references.append((f"references[{i}]", await upload.read(limits.max_image_bytes + 1)))
        captions = list(body.captions) or [""] * len(references)
        finished = await gw.personalize(body, references, captions)
        return render(request, finished)

    @app.post(
        "/v1/generate",
        response_model=GenerationResponse,
        responses={**ERROR_RESPONSES, 200: {"content": IMAGE_CONTENT}},
        dependencies=[*authenticated, json_only],
        summary="text-to-image, optionally with a fine-tuned subject (subject_id)",
    )
    async def generate(body: GenerateRequest, request: Request) -> Response:
        return render(request, await gw.generate(body))

    return app
