"""The FastAPI app of the gateway, built from the route table (``serving.routes``): routes, OpenAPI
(``/docs``), the demo page, auth, rate limits and metrics.

Order of checks on ``/v1/*``: bearer key (401) → rate limit (429) → declared body size (413) — all in
``GuardMiddleware``, before a byte of the body is read — then the streamed body size (413), content type
(415), schema and limits (422), image bytes (400/413/415), then the model. Every failure is the JSON
of ``serving.errors``.

No ``from __future__ import annotations`` here: the request models are created at start-up from the
config, and FastAPI must see them as real objects in the route signatures.
"""

import inspect
import time
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, File, Request, Security
from fastapi.security import HTTPBearer
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving import routes
from serving.errors import ApiError, ErrorBody, install_error_handlers
from serving.routes import FORM, ROUTES, Route
from serving.schemas import make_request_models

STATIC_DIR = Path(__file__).resolve().parent / "static"
METRIC_PATHS = {r.path for r in ROUTES} | set(routes.FRAMEWORK_PATHS)
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
        path = scope["path"] if scope["path"] in METRIC_PATHS else "other"
        status = 499  # stays so if the client disconnects before a response starts

        async def record_send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            headers = dict(scope.get("headers") or [])
            route = routes.find(scope["path"])
            routes.current.set(route)
            try:
                if routes.needs_key(scope["path"]):
                    key_id = self.gw.keys.identify(
                        headers.get(b"authorization", b"").decode("latin-1") or None, scope.get("client")
                    )
                    if route is not None and route.rate_limit is not None:
                        self.gw.limiters[route.rate_limit].take(key_id)
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


def endpoint(route: Route, gw, models):
    """``route.handler`` bound to the gateway, with the signature FastAPI reads the request from."""

    async def call(request: Request, **body):
        return await route.handler(gw, request, *body.values())

    parameters = [inspect.Parameter("request", inspect.Parameter.KEYWORD_ONLY, annotation=Request)]
    if route.request is not None:
        model = getattr(models, route.request)
        annotation = Annotated[model, File()] if route.content_type == FORM else model
        parameters.append(inspect.Parameter("body", inspect.Parameter.KEYWORD_ONLY, annotation=annotation))
    call.__signature__ = inspect.Signature(parameters)
    call.__name__ = route.handler.__name__
    return call


def build_api(gw) -> FastAPI:
    """The app of ``serving.routes.ROUTES``, its error shape, guard middleware and the demo page."""
    models = make_request_models(gw.limits, gw.max_references, gw.cfg.serving.request_timeout_s)
    app = FastAPI(
        title="s3jedi serving",
        version="1",
        description=(
            "Finetuning-free personalization (JeDi) and text-to-image with fine-tuned subjects. "
            f"{gw.keys.describe()}. Limits below are this server's configuration."
        ),
    )
    install_error_handlers(app, body_too_large(gw.limits.max_request_bytes))
    app.add_middleware(GuardMiddleware, gateway=gw)
    # Documents the scheme in OpenAPI; GuardMiddleware enforces it.
    bearer = Security(HTTPBearer(auto_error=False, description="an API key of this server"))
    for route in ROUTES:
        dependencies = [bearer] if route.auth else []
        if route.content_type is not None:
            dependencies.append(Depends(_require(route.content_type)))
        responses = {**(ERROR_RESPONSES if route.auth else {}), **route.extra_responses}
        if route.spends is not None:
            responses[200] = {"content": IMAGE_CONTENT}
        app.add_api_route(
            route.path,
            endpoint(route, gw, models),
            methods=[route.method],
            response_model=route.response,
            responses=responses,
            dependencies=dependencies,
            summary=route.summary,
            include_in_schema=route.in_schema,
        )
    app.mount("/demo", StaticFiles(directory=STATIC_DIR, html=True), name="demo")
    return app
