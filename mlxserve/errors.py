"""Typed errors shared by every layer. Pure Python: imports nothing from the package.

The API layer maps these to each protocol's error body; their messages are written for the
end user (no file paths, no internal names).
"""

from __future__ import annotations


class MlxserveError(Exception):
    """Base class. ``status`` is the HTTP status the API answers with."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code


class InvalidRequest(MlxserveError):
    """A request value is wrong (bad sampling value, prompt too long, ...): HTTP 400."""

    status = 400
    code = "invalid_request"


class ModelNotFound(MlxserveError):
    status = 404
    code = "model_not_found"


class ModelLoadError(MlxserveError):
    """A model cannot be loaded: missing path, bad GGUF, unsupported architecture, ..."""

    status = 500
    code = "model_load_error"


class EngineOverloaded(MlxserveError):
    status = 503
    code = "engine_overloaded"


class RequestTimedOut(MlxserveError):
    """A request ran past its deadline (--request-timeout or its `timeout` field)."""

    status = 408
    code = "request_timeout"
