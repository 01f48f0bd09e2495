"""Bad input on the Anthropic routes → Anthropic's error body and status (never 422 or
500, streaming or not); the server keeps serving. The tiny random model is enough."""

from __future__ import annotations

import base64

import anthropic
import pytest

from anthropic_support import assert_anthropic_error, post
from e2e_support import TINY_NAME

USER = [{"role": "user", "content": "hello"}]
CALL = {"role": "assistant", "content": [
    {"type": "tool_use", "id": "toolu_1", "name": "get_time", "input": {}}]}
PNG_1PX = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cf00000301010018dd8db40000000049454e44ae426082"
)).decode()


def body(**fields) -> dict:
    return {"model": TINY_NAME, "max_tokens": 4, "messages": USER, **fields}


def user(*blocks) -> list[dict]:
    return [{"role": "user", "content": list(blocks)}]


BAD_MESSAGES = [
    pytest.param({"model": TINY_NAME, "messages": USER}, "max_tokens", id="missing-max-tokens"),
    pytest.param(body(max_tokens="5"), "max_tokens", id="max-tokens-string"),
    pytest.param(body(max_tokens=0), "max_tokens", id="max-tokens-zero"),
    pytest.param(body(messages=[]), "messages", id="no-messages"),
    pytest.param(body(messages=[{"role": "tool", "content": "x"}]), "role", id="bad-role"),
    pytest.param(body(messages=[{"role": "system", "content": "x"}]), "at least one",
                 id="only-system-messages"),
    pytest.param(body(messages=user({"type": "document", "source": {}})), "document",
                 id="unknown-block-type"),
    pytest.param(body(messages=user({"text": "no type"})), "type", id="block-without-type"),
    pytest.param(body(messages=[*USER, CALL, *user(
        {"type": "tool_result", "tool_use_id": "toolu_nope", "content": "1"})]),
        "toolu_nope", id="tool-result-unknown-id"),
    pytest.param(body(messages=user({"type": "tool_result", "tool_use_id": "toolu_1",
                                     "content": "12:00"})), "toolu_1",
                 id="tool-result-before-its-tool-use"),
    pytest.param(body(messages=user({"type": "image", "source": {"type": "base64"}})),
                 "image", id="image-without-data"),
    pytest.param(body(messages=user({"type": "image", "source": {
        "type": "base64", "media_type": "image/png", "data": PNG_1PX}})), "image",
        id="image-on-a-text-model"),
    pytest.param(body(output_config={"format": {"type": "json_schema"}}),
                 "output_config.format", id="structured-output-without-schema"),
    pytest.param(body(output_config={"format": {"type": "xml"}}),
                 "output_config.format", id="structured-output-of-unknown-type"),
    pytest.param(body(tool_choice={"type": "sometimes"}), "tool_choice", id="bad-tool-choice"),
    pytest.param(body(thinking={"type": "maybe"}), "thinking", id="bad-thinking"),
    pytest.param(body(tools=[{"name": "x"}]), "input_schema", id="tool-without-schema"),
    pytest.param(body(temperature=5), "temperature", id="temperature-out-of-range"),
    pytest.param(body(stop_sequences=[""]), "stop", id="empty-stop-sequence"),
    pytest.param(body(system=[{"type": "image"}]), "system", id="system-not-text"),
]


@pytest.mark.parametrize("payload, mentions", BAD_MESSAGES)
@pytest.mark.parametrize("stream", [False, True])
def test_bad_messages_are_anthropic_400(tiny_server, payload, mentions, stream):
    payload = dict(payload, stream=True) if stream else payload
    message = assert_anthropic_error(post(tiny_server, "/v1/messages", payload), 400,
                                     "invalid_request_error")
    assert mentions in message


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]"])
def test_malformed_bodies_are_anthropic_400(tiny_server, content):
    assert_anthropic_error(post(tiny_server, "/v1/messages", content), 400,
                           "invalid_request_error")


def test_count_tokens_bad_input_is_anthropic_400(tiny_server):
    assert_anthropic_error(post(tiny_server, "/v1/messages/count_tokens",
                                {"model": TINY_NAME}), 400, "invalid_request_error")
    bad_block = {"model": TINY_NAME, "messages": user({"type": "video"})}
    assert_anthropic_error(post(tiny_server, "/v1/messages/count_tokens", bad_block), 400,
                           "invalid_request_error")


def test_sdk_raises_bad_request_and_the_server_keeps_serving(tiny_server):
    client = anthropic.Anthropic(base_url=tiny_server.base_url, api_key="x", max_retries=0)
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(model=TINY_NAME, max_tokens=4, messages=user(
            {"type": "document", "source": {}}))
    answer = client.messages.create(model=TINY_NAME, max_tokens=3, messages=USER)
    assert answer.stop_reason in ("end_turn", "max_tokens") and answer.content is not None
