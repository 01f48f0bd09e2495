"""Limits on what a client controls, load shedding, CORS, metrics auth, request ids and
the access log, on a real server started with tight limits (conftest.TIGHT_LIMITS)."""

from __future__ import annotations

import json
import socket
import time

import anthropic
import httpx
import openai
import pytest

from robust_support import ALLOWED_ORIGIN, API_KEY, TINY_NAME, assert_error_format, assert_idle

AUTH = {"Authorization": f"Bearer {API_KEY}"}
HI = [{"role": "user", "content": "hi"}]
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


@pytest.fixture()
def client(tight_server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{tight_server.base_url}/v1", api_key=API_KEY,
                         max_retries=0, timeout=60)


CHAT_OVER_LIMIT = [
    ("--max-messages", dict(messages=HI * 5)),
    ("--max-content-parts", dict(messages=[{"role": "user", "content": [
        {"type": "text", "text": "a"}] * 5}])),
    ("--max-tools", dict(messages=HI, tools=[TOOL] * 3)),
    ("--max-tool-schema-bytes", dict(messages=HI, tools=[{**TOOL, "function": {
        **TOOL["function"], "description": "x" * 500}}])),
    ("--max-stop-strings", dict(messages=HI, stop=["a", "b", "c"])),
    ("--max-stop-string-chars", dict(messages=HI, stop=["nine char"])),
    ("--max-logit-bias", dict(messages=HI, logit_bias={"1": 1, "2": 1, "3": 1})),
    ("--max-total-tokens", dict(messages=HI, n=3, max_tokens=30)),
]


@pytest.mark.parametrize("option,fields", CHAT_OVER_LIMIT, ids=[o for o, _ in CHAT_OVER_LIMIT])
def test_each_chat_limit_is_a_400_naming_it(client, option, fields):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=TINY_NAME, **{"max_tokens": 4, **fields})
    error = caught.value.body
    assert option in error["message"] and error["code"] == "limit_exceeded", error


def test_a_request_at_the_limits_is_served(client):
    reply = client.chat.completions.create(
        model=TINY_NAME, messages=HI * 4, tools=[TOOL] * 2, stop=["ab", "cd"],
        logit_bias={"1": 1, "2": 1}, n=2, max_tokens=32, temperature=0)
    assert len(reply.choices) == 2 and reply.usage.completion_tokens > 0


def test_completions_limits(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model=TINY_NAME, prompt=["a", "b", "c"], max_tokens=30)
    assert "--max-total-tokens" in caught.value.body["message"]
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model=TINY_NAME, prompt="a", stop=["a", "b", "c"])
    assert "--max-stop-strings" in caught.value.body["message"]


def test_json_depth_and_header_size_are_400s_naming_them(tight_server):
    url = f"{tight_server.base_url}/v1/chat/completions"
    deep = '{"messages": [{"role": "user", "content": "hi", "x": ' + "[" * 40 + "]" * 40 + "}]}"
    response = httpx.post(url, content=deep, headers={**AUTH, "content-type": "application/json"})
    assert response.status_code == 400 and "--max-json-depth" in response.text
    assert_error_format("/v1/chat/completions", response)
    very_deep = "[" * 200_000 + "]" * 200_000  # deeper than Python's JSON parser can recurse
    response = httpx.post(url, content=very_deep, headers=AUTH)
    assert response.status_code == 400 and "--max-json-depth" in response.text
    response = httpx.post(url, json={"messages": HI}, headers={**AUTH, "x-big": "a" * 5000})
    assert response.status_code == 400 and "--max-header-bytes" in response.text
    assert_error_format("/v1/chat/completions", response)


def _open_slow_requests(server, count: int) -> list[tuple[socket.socket, bytes]]:
    """``count`` requests in flight: headers sent, body held back (a slow client)."""
    body = json.dumps({"model": TINY_NAME, "messages": HI, "max_tokens": 4}).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {API_KEY}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    held = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        sock.sendall(head + body[:10])
        held.append((sock, body[10:]))
    return held


def _finish_slow_request(sock: socket.socket, rest: bytes) -> bytes:
    sock.sendall(rest)
    reply = b""
    while b"\r\n\r\n" not in reply:
        reply += sock.recv(65536)
    sock.close()
    return reply


def test_beyond_max_concurrent_requests_is_503_with_retry_after(tight_server, client):
    held = _open_slow_requests(tight_server, 2)
    try:
        time.sleep(0.5)  # both reached the server
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(model=TINY_NAME, messages=HI, max_tokens=4)
        response = caught.value.response
        assert response.status_code == 503 and response.headers["retry-after"] == "1"
        assert "--max-concurrent-requests" in caught.value.body["message"]
        assert_error_format("/v1/chat/completions", response)
        assert httpx.get(f"{tight_server.base_url}/ready").status_code == 200  # probes pass
    finally:
        replies = [_finish_slow_request(sock, rest) for sock, rest in held]
    assert all(r.startswith(b"HTTP/1.1 200") for r in replies), replies
    reply = client.chat.completions.create(model=TINY_NAME, messages=HI, max_tokens=4)
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert_idle(tight_server, headers=AUTH)


def test_cors_only_for_allowed_origins(tight_server):
    url = f"{tight_server.base_url}/v1/chat/completions"
    preflight = {"Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization,content-type"}
    allowed = httpx.options(url, headers={"Origin": ALLOWED_ORIGIN, **preflight})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    other = httpx.options(url, headers={"Origin": "http://evil.example", **preflight})
    assert "access-control-allow-origin" not in other.headers


def test_cors_is_off_by_default(robust_server):
    response = httpx.get(f"{robust_server.base_url}/v1/models",
                         headers={"Origin": ALLOWED_ORIGIN})
    assert response.status_code == 200 and "access-control-allow-origin" not in response.headers


def test_metrics_can_require_the_api_key(tight_server, robust_server):
    assert httpx.get(f"{tight_server.base_url}/metrics").status_code == 401
    assert httpx.get(f"{tight_server.base_url}/metrics/json").status_code == 401
    assert "mlxserve:num_requests_running" in httpx.get(
        f"{tight_server.base_url}/metrics", headers=AUTH).text
    assert httpx.get(f"{robust_server.base_url}/metrics").status_code == 200  # default: open


def _access_line(server, request_id: str, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = [line for line in server.log_tail(2_000_000).splitlines()
                 if f"request id={request_id} " in line]
        if lines:
            return lines[-1]
        time.sleep(0.1)
    raise AssertionError(f"no access-log line for {request_id}")


def test_request_id_echoed_and_one_access_line(tight_server, client, robust_server):
    secret = "the secret prompt text 8271"
    raw = client.chat.completions.with_raw_response.create(
        model=TINY_NAME, messages=[{"role": "user", "content": secret}], max_tokens=5,
        temperature=0, extra_headers={"X-Request-Id": "ops-test-42"})
    reply = raw.parse()
    assert raw.headers["x-request-id"] == "ops-test-42"
    line = _access_line(tight_server, "ops-test-42")
    assert "path=/v1/chat/completions status=200" in line
    assert f"prompt_tokens={reply.usage.prompt_tokens} " in line
    assert f"output_tokens={reply.usage.completion_tokens} " in line
    assert "ttft_ms=" in line and "ttft_ms=-" not in line and "total_ms=" in line
    assert secret in tight_server.log_tail(2_000_000)  # --log-prompts
    generated = httpx.post(f"{robust_server.base_url}/v1/chat/completions",
                           json={"messages": [{"role": "user", "content": secret}],
                                 "max_tokens": 3})
    request_id = generated.headers["x-request-id"]
    assert len(request_id) == 32  # none given: a fresh one
    assert "status=200" in _access_line(robust_server, request_id)
    assert secret not in robust_server.log_tail(2_000_000)  # no prompt text by default


def test_a_malformed_request_id_is_replaced(tight_server):
    response = httpx.get(f"{tight_server.base_url}/v1/models",
                         headers={**AUTH, "X-Request-Id": "bad id\twith spaces"})
    assert response.headers["x-request-id"] != "bad id\twith spaces"
    assert json.loads(response.text)["data"]


@pytest.fixture()
def claude(tight_server) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=tight_server.base_url, api_key=API_KEY, max_retries=0,
                               timeout=60)


def test_anthropic_routes_get_limits_and_shedding_in_their_format(tight_server, claude):
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(model=TINY_NAME, max_tokens=4, messages=HI * 5)
    assert caught.value.body["type"] == "error"
    assert "--max-messages" in caught.value.body["error"]["message"]
    held = _open_slow_requests(tight_server, 2)
    try:
        time.sleep(0.5)
        with pytest.raises(anthropic.APIStatusError) as caught:
            claude.messages.create(model=TINY_NAME, max_tokens=4, messages=HI)
        assert caught.value.status_code == 503
        assert caught.value.response.headers["retry-after"] == "1"
        assert_error_format("/v1/messages", caught.value.response)
    finally:
        for sock, rest in held:
            _finish_slow_request(sock, rest)
    reply = claude.messages.create(model=TINY_NAME, max_tokens=4, messages=HI)
    assert reply.stop_reason in ("end_turn", "max_tokens")


def test_responses_route_gets_the_limits(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model=TINY_NAME, input="hi", max_output_tokens=16,
                                tools=[{"type": "function", "name": f"f{i}",
                                        "parameters": {"type": "object"}} for i in range(3)])
    assert "--max-tools" in caught.value.body["message"]
