"""Pure-ASGI guards run before routing: request body size and API keys."""

from __future__ import annotations

import hmac
import json
from typing import Any, Awaitable, Callable

from mlxserve.api.errors import render_error

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PUBLIC_PATHS = ("/health", "/ready", "/version")
METRICS_PATHS = ("/metrics", "/metrics/json")


async def send_error(send: Send, scope: Scope, status: int, message: str, code: str,
                     extra_headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    """An error answered before routing, in the protocol of the requested path."""
    body = json.dumps(render_error(scope.get("path", ""), status, message, None, code)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *extra_headers]})
    await send({"type": "http.response.body", "body": body})


class BodySizeLimit:
    """413 when Content-Length, or the bytes actually streamed, exceed ``max_bytes``.

    The body is read here (bounded) and replayed to the app, so the limit holds whatever
    the app does with the body.
    """

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    def _declared_size(self, scope: Scope) -> int | None:
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    return int(value)
                except ValueError:
                    return None
        return None

    async def _read_bounded(self, receive: Receive) -> Message | None:
        """The whole body as one message, or None when it is too large."""
        parts: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return message  # the client went away: hand that on
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_bytes:
                return None
            parts.append(chunk)
            if not message.get("more_body", False):
                return {"type": "http.request", "body": b"".join(parts), "more_body": False}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        too_large = f"the request body is larger than {self.max_bytes} bytes"
        declared = self._declared_size(scope)
        body = None if declared is not None and declared > self.max_bytes else (
            await self._read_bounded(receive))
        if body is None:
            await send_error(send, scope, 413, too_large, "request_too_large")
            return
        await self.app(scope, replaying(body, receive), send)


def replaying(first: Message, receive: Receive) -> Receive:
    """A receive that hands out ``first`` (a message already read) once, then reads on."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return first
        return await receive()

    return replay


class ApiKeyCheck:
    """401 unless the bearer token (or x-api-key) is one of ``api_keys``."""

    def __init__(self, app: ASGIApp, api_keys: tuple[str, ...],
                 public_paths: tuple[str, ...] = PUBLIC_PATHS):
        self.app = app
        self.api_keys = tuple(k.encode() for k in api_keys)
        self.public_paths = public_paths

    def _presented(self, scope: Scope) -> bytes:
        for name, value in scope.get("headers", []):
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                return value[7:].strip()
            if name == b"x-api-key":
                return value.strip()
        return b""

    def _allowed(self, token: bytes) -> bool:
        return any(hmac.compare_digest(token, key) for key in self.api_keys)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or not self.api_keys
                or scope.get("path", "") in self.public_paths or scope.get("method") == "OPTIONS"):
            await self.app(scope, receive, send)
            return
        if not self._allowed(self._presented(scope)):
            await send_error(send, scope, 401, "invalid or missing API key", "invalid_api_key")
            return
        await self.app(scope, receive, send)
