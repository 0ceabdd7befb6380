"""One JSON shape for every error the API returns, naming the field and the limit.

    {"error": {"status": 413, "field": "references[1].image", "message": "...", "limit": 8388608}}

FastAPI's own errors (validation, unknown route, wrong method) are converted to the same shape, so
a client has one thing to parse and a person reading it learns what to change.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.logs import get_logger

log = get_logger("serving.errors")

_LIMIT_KEYS = ("le", "lt", "ge", "gt", "max_length", "min_length", "multiple_of", "pattern", "expected")


class ErrorDetail(BaseModel):
    status: int
    field: str | None = Field(None, description="the request field at fault, dotted, with [i] for list items")
    message: str
    limit: Any = Field(None, description="the limit that was exceeded, where there is one")


class ErrorBody(BaseModel):
    error: ErrorDetail
    errors: list[ErrorDetail] | None = Field(None, description="every problem found, when there are several")


class ApiError(Exception):
    def __init__(
        self, status: int, field: str | None, message: str, limit: Any = None, headers: dict[str, str] | None = None
    ):
        super().__init__(message)
        self.detail = ErrorDetail(status=status, field=field, message=message, limit=limit)
        self.headers = headers

    def response(self) -> JSONResponse:
        return JSONResponse(ErrorBody(error=self.detail).model_dump(mode="json"), self.detail.status, self.headers)


def field_path(loc: tuple | list) -> str | None:
    """``("body", "references", 0, "image")`` → ``references[0].image``."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or None


_JSON_KINDS = {
    list: "an array",
    type(None): "null",
    str: "a string",
    bool: "a boolean",
    int: "a number",
    float: "a number",
}


def _validation_detail(error: dict) -> ErrorDetail:
    field = field_path(error.get("loc", ()))
    ctx = error.get("ctx") or {}
    limit = next((ctx[k] for k in _LIMIT_KEYS if k in ctx), None)
    message = error.get("msg", "invalid")
    if error.get("type") == "json_invalid":
        field, message = "body", f"not valid JSON: {ctx.get('error', message)}"
    elif field is None and tuple(error.get("loc", ()))[:1] == ("body",):  # the body as a whole
        field = "body"
        if error.get("type") == "missing":
            message = "empty; expected a JSON object"
        else:
            message = f"expected a JSON object, got {_JSON_KINDS.get(type(error.get('input')), 'something else')}"
    return ErrorDetail(status=422, field=field, message=f"{field or 'request'}: {message}", limit=_plain(limit))


def _plain(value: Any) -> Any:
    return value if isinstance(value, (int, float, str, bool, type(None))) else str(value)


def install_error_handlers(app: FastAPI, too_large: ApiError) -> None:
    """``too_large``: what a 413 raised while the body streams in (an ``HTTPException``) says."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = [_validation_detail(e) for e in exc.errors()] or [
            ErrorDetail(status=422, field=None, message="invalid request")
        ]
        body = ErrorBody(error=details[0], errors=details if len(details) > 1 else None)
        return JSONResponse(body.model_dump(mode="json"), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 413:
            return too_large.response()
        # A framework 400 means the body could not be parsed at all (not UTF-8, broken multipart).
        field = "body" if exc.status_code == 400 else None
        message = f"body: {exc.detail}" if field else str(exc.detail)
        detail = ErrorDetail(status=exc.status_code, field=field, message=message)
        return JSONResponse(ErrorBody(error=detail).model_dump(mode="json"), exc.status_code, exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", path=request.url.path, error=repr(exc))
        detail = ErrorDetail(status=500, field=None, message="internal error; it has been logged")
        return JSONResponse(ErrorBody(error=detail).model_dump(mode="json"), 500)
