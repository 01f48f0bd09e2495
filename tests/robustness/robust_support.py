"""Helpers shared by the robustness tests (kept out of conftest.py, whose module name
other folders' conftest files share)."""

from __future__ import annotations

import os
import time

import httpx

TINY_NAME = "tiny-chat"
TINY_CONTEXT = 512
API_KEY = "robust-key"
FAULT_SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fault_server.py")
ANTHROPIC_PREFIX = "/v1/messages"
# Tight limits, each reachable by a small request (tests/robustness/test_limits.py).
TIGHT_LIMITS = {"--max-messages": 4, "--max-content-parts": 4, "--max-tools": 2,
                "--max-tool-schema-bytes": 400, "--max-json-depth": 12,
                "--max-stop-strings": 2, "--max-stop-string-chars": 8,
                "--max-logit-bias": 2, "--max-total-tokens": 64,
                "--max-header-bytes": 4096}
ALLOWED_ORIGIN = "http://allowed.example"


def engine_stats(server, headers: dict | None = None) -> dict:
    response = httpx.get(f"{server.base_url}/metrics/json", headers=headers, timeout=10)
    return response.json()["engine"]


def wait_until_idle(server, timeout: float = 30.0, headers: dict | None = None) -> dict:
    """Engine stats once nothing runs or waits (or after ``timeout``)."""
    deadline = time.monotonic() + timeout
    stats = engine_stats(server, headers)
    while (stats["running"] or stats["waiting"] or stats["kv_tokens_used"]) and (
            time.monotonic() < deadline):
        time.sleep(0.05)
        stats = engine_stats(server, headers)
    return stats


def assert_idle(server, headers: dict | None = None) -> None:
    stats = wait_until_idle(server, headers=headers)
    assert (stats["running"], stats["waiting"], stats["kv_tokens_used"]) == (0, 0, 0), stats


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def assert_error_format(path: str, response) -> None:
    """The error body of ``path``'s protocol: Anthropic's for /v1/messages, OpenAI's else."""
    body = response.json()
    if path.startswith(ANTHROPIC_PREFIX):
        assert body["type"] == "error", body
        assert isinstance(body["error"]["type"], str) and body["error"]["message"], body
        return
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, body
    assert isinstance(error["message"], str) and error["message"], body
    assert isinstance(error["type"], str), body
