"""Every failure becomes OpenAI's error body: {"error": {message, type, param, code}}.

Messages are for the end user: no stack traces, file paths or internal names.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from mlxserve.errors import MlxserveError

log = logging.getLogger("mlxserve.api")

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error",
               403: "permission_error", 404: "not_found_error", 413: "invalid_request_error",
               429: "rate_limit_error", 503: "server_overloaded"}


def error_body(status: int, message: str, param: str | None = None,
               code: str | None = None) -> dict:
    kind = ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error_response(status: int, message: str, param: str | None = None,
                   code: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, param, code), status_code=status)


def mlxserve_error_response(error: MlxserveError) -> JSONResponse:
    return error_response(error.status, error.message, error.param, error.code)


def _location(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    return ".".join(parts)


def validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    if not errors:
        return "the request body is not valid", None
    first = errors[0]
    where = _location(tuple(first.get("loc", ())))
    if first.get("type") == "json_invalid":
        return "the request body is not valid JSON", None
    if first.get("type") == "missing":
        return f"'{where}' is required", where or None
    if not where and first.get("type") in ("model_attributes_type", "dict_type"):
        return "the request body must be a JSON object (Content-Type: application/json)", None
    reason = first.get("msg", "is not valid")
    if first.get("type") == "value_error":
        reason = reason.removeprefix("Value error, ")
    return (f"'{where}': {reason}" if where else reason), where or None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(MlxserveError)
    async def _mlxserve(_: Request, exc: MlxserveError) -> JSONResponse:
        if exc.status >= 500:
            log.error("request failed: %s", exc.message)
        return mlxserve_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = validation_message(exc)
        return error_response(400, message, param, "invalid_request")

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        code = "not_found" if exc.status_code == 404 else None
        return error_response(exc.status_code, str(exc.detail), None, code)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return error_response(500, "internal server error", None, "internal_error")
