"""Every failure becomes the error body of the protocol its route speaks.

- OpenAI routes (and everything else): ``{"error": {message, type, param, code}}``.
- Anthropic routes (``/v1/messages...``): ``{"type": "error", "error": {type, message}}``
  with Anthropic's error types.

``render_error(path, status, ...)`` is the one function that decides; the exception
handlers, the ASGI guards (401, 413, load shedding) and streams all go through it.
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
ANTHROPIC_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error",
                         403: "permission_error", 404: "not_found_error",
                         413: "request_too_large", 429: "rate_limit_error",
                         503: "overloaded_error", 529: "overloaded_error"}
ANTHROPIC_PATH_PREFIX = "/v1/messages"


def is_anthropic_path(path: str) -> bool:
    return path == ANTHROPIC_PATH_PREFIX or path.startswith(ANTHROPIC_PATH_PREFIX + "/")


def error_body(status: int, message: str, param: str | None = None,
               code: str | None = None) -> dict:
    """OpenAI's error body."""
    kind = ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def anthropic_error_body(status: int, message: str) -> dict:
    kind = ANTHROPIC_ERROR_TYPES.get(status, "api_error" if status >= 500
                                     else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def render_error(path: str, status: int, message: str, param: str | None = None,
                 code: str | None = None) -> dict:
    """The error body for a request to ``path``, in that route's protocol."""
    if is_anthropic_path(path):
        return anthropic_error_body(status, message)
    return error_body(status, message, param, code)


def error_response(status: int, message: str, param: str | None = None,
                   code: str | None = None, path: str = "") -> JSONResponse:
    return JSONResponse(render_error(path, status, message, param, code), status_code=status)


def mlxserve_error_response(error: MlxserveError, path: str = "") -> JSONResponse:
    return error_response(error.status, error.message, error.param, error.code, path)


# pydantic names the member of a union it tried as a location step ("stop.str"); these
# are the words for the members our request models use.
UNION_MEMBER_WORDS = {"str": "a string", "list[str]": "an array of strings",
                      "dict[str,any]": "an object", "int": "an integer", "float": "a number",
                      "bool": "a boolean", "list[int]": "an array of integers"}


def _location(loc: tuple) -> list[str]:
    return [str(p) for p in loc if p != "body"]


def _union_message(field: str, errors: list[dict]) -> str | None:
    """"'stop' must be a string or an array of strings" when every error is one union
    member of the same field failing; None otherwise."""
    members = []
    for error in errors:
        where = _location(tuple(error.get("loc", ())))
        if len(where) < 2 or where[0] != field or where[1] not in UNION_MEMBER_WORDS:
            return None
        if UNION_MEMBER_WORDS[where[1]] not in members:
            members.append(UNION_MEMBER_WORDS[where[1]])
    return f"'{field}' must be {' or '.join(members)}" if len(members) > 1 else None


def validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    """(message, param): ``param`` is the top-level field, as OpenAI reports it."""
    errors = exc.errors()
    if not errors:
        return "the request body is not valid", None
    first = errors[0]
    path = _location(tuple(first.get("loc", ())))
    param = path[0] if path else None
    where = ".".join(step for step in path if step not in UNION_MEMBER_WORDS)
    if first.get("type") == "json_invalid":
        return "the request body is not valid JSON", None
    if first.get("type") == "missing":
        return f"'{where}' is required", param
    if not path and first.get("type") in ("model_attributes_type", "dict_type"):
        return "the request body must be a JSON object (Content-Type: application/json)", None
    if param is not None:
        union = _union_message(param, [e for e in errors if _location(tuple(e.get("loc", ())))[:1] == [param]])
        if union is not None:
            return union, param
    reason = first.get("msg", "is not valid")
    if first.get("type") == "value_error":
        reason = reason.removeprefix("Value error, ")
    return (f"'{where}': {reason}" if where else reason), param


def unreadable_body_message(cause: BaseException | None) -> str:
    """Why FastAPI could not parse a body (its own message says only that it could not)."""
    if isinstance(cause, RecursionError):
        return "the request body is nested too deeply to be parsed"
    if isinstance(cause, UnicodeDecodeError):
        return "the request body is not valid UTF-8"
    return "the request body is not valid JSON"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(MlxserveError)
    async def _mlxserve(request: Request, exc: MlxserveError) -> JSONResponse:
        if exc.status >= 500 and exc.status != 503:  # 503s (loading, shed, shutdown): expected
            log.error("request failed: %s", exc.message)
        return mlxserve_error_response(exc, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = validation_message(exc)
        return error_response(400, message, param, "invalid_request", request.url.path)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI could not read the body (nesting, not UTF-8)
            return error_response(400, unreadable_body_message(exc.__cause__), None,
                                  "invalid_request", request.url.path)
        code = "not_found" if exc.status_code == 404 else None
        return error_response(exc.status_code, str(exc.detail), None, code, request.url.path)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return error_response(500, "internal server error", None, "internal_error",
                              request.url.path)
