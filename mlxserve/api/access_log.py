"""One access-log line per HTTP request, and the X-Request-Id header.

The outermost ASGI layer: it opens the request's ``HttpTelemetry`` (the service adds
prompt/output tokens and the first-token time to it), echoes ``X-Request-Id`` (the
client's when it is a sane id, a new one otherwise) and, when the response is done, logs

    request id=... method=POST path=/v1/chat/completions status=200 prompt_tokens=12
    output_tokens=30 ttft_ms=41.0 total_ms=310.2

on the ``mlxserve.access`` logger (probes and scrapes at debug level). Prompt text is logged (a second line) only with
``--log-prompts``.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from mlxserve.api.guards import SYSTEM_PATHS
from mlxserve.api.middleware import ASGIApp, Message, Receive, Scope, Send
from mlxserve.serving.telemetry import HttpTelemetry, current_http

log = logging.getLogger("mlxserve.access")
_SANE_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")
_MAX_LOGGED_PATH = 200


def request_id_of(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id" and _SANE_ID.fullmatch(value):
            return value.decode()
    return uuid.uuid4().hex


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}"


def access_line(scope: Scope, http: HttpTelemetry, status: int) -> str:
    now = time.monotonic()
    ttft = None if http.first_token_at is None else http.first_token_at - http.started
    path = scope.get("path", "")[:_MAX_LOGGED_PATH].encode("unicode_escape").decode()
    return (f"request id={http.request_id} method={scope.get('method', '-')} path={path} "
            f"status={status} prompt_tokens={http.prompt_tokens} "
            f"output_tokens={http.completion_tokens} ttft_ms={_ms(ttft)} "
            f"total_ms={_ms(now - http.started)}")


class AccessLog:
    def __init__(self, app: ASGIApp, log_prompts: bool = False):
        self.app = app
        self.log_prompts = log_prompts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        http = HttpTelemetry(request_id_of(scope), time.monotonic())
        echoed = (b"x-request-id", http.request_id.encode())
        status = 500  # what the client sees when the app fails before answering

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), echoed]}
            await send(message)

        token = current_http.set(http)
        try:
            await self.app(scope, receive, sending)
        finally:
            current_http.reset(token)
            quiet = scope.get("path") in SYSTEM_PATHS  # probes and scrapes: debug level
            log.log(logging.DEBUG if quiet else logging.INFO, "%s",
                    access_line(scope, http, status))
            if self.log_prompts and http.prompt_text is not None:
                log.info("prompt id=%s text=%r", http.request_id, http.prompt_text)
