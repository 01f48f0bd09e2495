"""Errors answered before routing (401, 413) and unknown routes (404) are rendered in
Anthropic's error format on the Anthropic routes, in OpenAI's elsewhere."""

from __future__ import annotations

import anthropic
import httpx
import pytest

from anthropic_support import assert_anthropic_error, post
from e2e_support import GUARD_KEY, GUARD_MAX_BYTES

BODY = {"model": "any", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}


def test_missing_or_wrong_key_is_anthropic_401(guarded_server):
    assert_anthropic_error(post(guarded_server, "/v1/messages", BODY), 401,
                           "authentication_error")
    assert_anthropic_error(post(guarded_server, "/v1/messages/count_tokens", BODY,
                                {"x-api-key": "wrong"}), 401, "authentication_error")
    client = anthropic.Anthropic(base_url=guarded_server.base_url, api_key="wrong",
                                 max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        client.messages.create(**BODY)


def test_oversize_body_is_anthropic_413(guarded_server):
    big = dict(BODY, messages=[{"role": "user", "content": "x" * (GUARD_MAX_BYTES * 2)}])
    assert_anthropic_error(post(guarded_server, "/v1/messages", big,
                                {"x-api-key": GUARD_KEY}), 413, "request_too_large")
    client = anthropic.Anthropic(base_url=guarded_server.base_url, api_key=GUARD_KEY,
                                 max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as info:
        client.messages.create(**big)
    assert info.value.status_code == 413


def test_unknown_anthropic_route_is_anthropic_404(tiny_server):
    assert_anthropic_error(httpx.get(f"{tiny_server.base_url}/v1/messages/nothing"), 404,
                           "not_found_error")
    other = httpx.get(f"{tiny_server.base_url}/v1/nothing")
    assert other.status_code == 404 and set(other.json()) == {"error"}
