"""Pure-ASGI guards for running in production: load shedding, draining, request limits.

- ``Admission`` (one per app, on ``app.state.admission``) counts the requests in flight
  and knows whether the server is draining; ``cli.serve`` drains through it on SIGTERM.
- ``RequestGuard`` answers, before any body is read: 400 when the headers are larger than
  ``max_header_bytes``; 503 while draining; 503 beyond ``--max-concurrent-requests``. Every
  503 that leaves the app (these, engine overload, model loading) carries ``Retry-After``.
- ``JsonDepthLimit`` refuses a body nested deeper than ``max_json_depth`` (400) before the
  JSON parser recurses into it.
Errors are written in the protocol of the requested route.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from mlxserve.api.middleware import (ASGIApp, Message, Receive, Scope, Send, replaying,
                                     send_error)
from mlxserve.serving.limits import exceeded, json_depth

# Paths that are never shed nor counted: probes and scrapes must work under load.
SYSTEM_PATHS = ("/health", "/ready", "/version", "/metrics", "/metrics/json")
RETRY_AFTER_S = 1  # an overloaded server: try again soon
RETRY_AFTER_DRAINING_S = 5  # this instance is going away: try another one


@dataclass
class Admission:
    max_concurrent: int | None = None  # None: no bound (the engine queue still bounds)
    in_flight: int = 0
    draining: bool = False
    _idle: asyncio.Event = field(default_factory=asyncio.Event)

    def try_enter(self) -> bool:
        if self.max_concurrent is not None and self.in_flight >= self.max_concurrent:
            return False
        self.in_flight += 1
        self._idle.clear()
        return True

    def leave(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        """True once nothing is in flight; False after ``timeout`` seconds."""
        if self.in_flight == 0:
            return True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True


def is_counted(scope: Scope) -> bool:
    return scope.get("path", "") not in SYSTEM_PATHS and scope.get("method") != "OPTIONS"


def retry_after(seconds: int) -> tuple[tuple[bytes, bytes], ...]:
    return ((b"retry-after", str(seconds).encode()),)


def _with_retry_after(send: Send, seconds: int) -> Send:
    """``send`` that adds Retry-After to a 503 that has none."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] == 503:
            headers = list(message.get("headers", []))
            if not any(name.lower() == b"retry-after" for name, _ in headers):
                headers.extend(retry_after(seconds))
            message = {**message, "headers": headers}
        await send(message)

    return sending


def header_bytes(scope: Scope) -> int:
    return sum(len(name) + len(value) for name, value in scope.get("headers", []))


class RequestGuard:
    def __init__(self, app: ASGIApp, admission: Admission, max_header_bytes: int):
        self.app = app
        self.admission = admission
        self.max_header_bytes = max_header_bytes

    async def _refuse(self, scope: Scope, send: Send) -> bool:
        """Answer a request that must not run; True when it was answered."""
        size = header_bytes(scope)
        if size > self.max_header_bytes:
            error = exceeded("the size of the request headers in bytes", size,
                             "max_header_bytes", self.max_header_bytes, None)
            await send_error(send, scope, 400, error.message, error.code)
            return True
        if not is_counted(scope):
            return False
        if self.admission.draining:
            await send_error(send, scope, 503, "the server is shutting down",
                             "server_shutting_down", retry_after(RETRY_AFTER_DRAINING_S))
            return True
        if not self.admission.try_enter():
            await send_error(send, scope, 503, "the server is busy: too many requests in "
                             f"flight (--max-concurrent-requests "
                             f"{self.admission.max_concurrent})", "server_overloaded",
                             retry_after(RETRY_AFTER_S))
            return True
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if await self._refuse(scope, send):
            return
        retrying = _with_retry_after(send, RETRY_AFTER_DRAINING_S if self.admission.draining
                                     else RETRY_AFTER_S)
        if not is_counted(scope):
            await self.app(scope, receive, retrying)
            return
        try:
            await self.app(scope, receive, retrying)
        finally:
            self.admission.leave()


class JsonDepthLimit:
    """400 when a request body nests arrays/objects deeper than ``max_depth``. Runs inside
    BodySizeLimit, so the body arrives as one bounded message, replayed here."""

    def __init__(self, app: ASGIApp, max_depth: int):
        self.app = app
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        first = await receive()
        depth = json_depth(first.get("body", b"")) if first["type"] == "http.request" else 0
        if depth > self.max_depth:
            error = exceeded("the nesting depth of the JSON body", depth, "max_json_depth",
                             self.max_depth, None)
            await send_error(send, scope, 400, error.message, error.code)
            return
        await self.app(scope, replaying(first, receive), send)
