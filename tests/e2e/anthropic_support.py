"""Helpers for the Anthropic-protocol e2e tests: raw posts and error-body checks."""

from __future__ import annotations

import json

import httpx

LEAKS = ("Traceback", "/work", ".py", "mlxserve.", "pydantic")


def post(server, path: str, body, headers=None) -> httpx.Response:
    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return httpx.post(f"{server.base_url}{path}", content=content, timeout=120,
                      headers={"content-type": "application/json", **(headers or {})})


def assert_anthropic_error(response: httpx.Response, status: int, kind: str) -> str:
    """The response is Anthropic's error body with ``status`` and error type ``kind``."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"type", "error"} and body["type"] == "error", body
    assert set(body["error"]) == {"type", "message"}, body
    assert body["error"]["type"] == kind, body
    message = body["error"]["message"]
    assert message and isinstance(message, str)
    for leak in LEAKS:
        assert leak not in message
    return message


def sse_events(response: httpx.Response) -> list[tuple[str, dict]]:
    """(event name, data) of each server-sent event of a finished response."""
    out = []
    for chunk in response.text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in chunk.splitlines() if ": " in line)
        if "data" in lines:
            out.append((lines.get("event", ""), json.loads(lines["data"])))
    return out


def prompt_tokens(usage) -> int:
    """The whole prompt: Anthropic counts prefix-cache reads apart from input_tokens."""
    return (usage.input_tokens + (usage.cache_read_input_tokens or 0)
            + (usage.cache_creation_input_tokens or 0))
