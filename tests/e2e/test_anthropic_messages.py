"""The Anthropic Messages API end to end: the real default model (SmolLM2-135M), the
official anthropic SDK and raw HTTP; greedy decoding (temperature is an extra_body field:
the current SDK no longer has it)."""

from __future__ import annotations

import json

import anthropic
import httpx
import pytest

from anthropic_support import assert_anthropic_error, post, prompt_tokens, sse_events

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m"
GREEDY = {"temperature": 0}
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
SYSTEM = [{"type": "text", "text": "You are a helpful assistant."},
          {"type": "text", "text": "Answer briefly.", "cache_control": {"type": "ephemeral"}}]


@pytest.fixture()
def client(default_server) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=default_server.base_url, api_key="unused",
                               max_retries=0, timeout=120)


def ask(client, **fields):
    body = {"model": MODEL, "max_tokens": 40, "messages": QUESTION, "system": SYSTEM,
            "extra_body": GREEDY, **fields}
    return client.messages.create(**body)


def test_plain_answer(client, default_server):
    httpx.delete(f"{default_server.base_url}/v1/cache", timeout=30)  # a cold prompt
    message = ask(client)
    assert message.id.startswith("msg_") and message.type == "message"
    assert message.role == "assistant" and message.model == MODEL
    (block,) = message.content
    assert block.type == "text" and "Paris" in block.text
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert message.usage.input_tokens > 10 and 0 < message.usage.output_tokens < 40
    assert message.usage.cache_read_input_tokens == 0


def test_streaming_equals_non_streaming(client):
    whole = ask(client)
    with client.messages.stream(model=MODEL, max_tokens=40, messages=QUESTION, system=SYSTEM,
                                extra_body=GREEDY) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == whole.content[0].text
    # the second of two equal requests may read more of its prompt from the prefix cache
    assert final.model_dump(exclude={"id", "usage"}) == whole.model_dump(exclude={"id", "usage"})
    assert prompt_tokens(final.usage) == prompt_tokens(whole.usage)
    assert final.usage.output_tokens == whole.usage.output_tokens


def test_cache_reads_are_not_input_tokens(client, default_server):
    """Anthropic's usage: input_tokens + cache_read_input_tokens = the prompt."""
    httpx.delete(f"{default_server.base_url}/v1/cache", timeout=30)
    cold, warm = ask(client, max_tokens=4), ask(client, max_tokens=4)
    assert cold.usage.cache_read_input_tokens == 0 and cold.usage.input_tokens > 10
    assert warm.usage.cache_read_input_tokens > 0  # the prefix cache holds the first
    assert prompt_tokens(warm.usage) == cold.usage.input_tokens
    assert warm.usage.input_tokens == cold.usage.input_tokens - warm.usage.cache_read_input_tokens


def test_raw_event_sequence(default_server):
    response = post(default_server, "/v1/messages", {
        "model": MODEL, "max_tokens": 12, "messages": QUESTION, "stream": True, **GREEDY})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response)
    assert all(name == data["type"] for name, data in events)
    names = [name for name, _ in events if name != "ping"]  # pings: whenever idle 0.25 s
    assert [name for name, _ in events][:2] == ["message_start", "ping"]
    assert names[:2] == ["message_start", "content_block_start"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(names[2:-3]) == {"content_block_delta"}
    start = events[0][1]["message"]
    assert start["content"] == [] and start["usage"]["input_tokens"] > 0
    end = events[-2][1]
    assert end["delta"]["stop_reason"] in ("end_turn", "max_tokens")
    # message_start goes out before the prefix-cache lookup: its input_tokens are the prompt
    end_usage = end["usage"]
    assert (end_usage["input_tokens"] + end_usage["cache_read_input_tokens"]
            == start["usage"]["input_tokens"])


def test_message_start_and_pings_come_before_a_slow_first_token(client, default_server):
    """A long fresh prompt takes seconds to prefill on this CPU: message_start is sent at
    once and pings (every 0.25 s on this server) follow until the first token, so agents
    such as Claude Code keep the connection. Read with the SDK's raw HTTP stream (its event
    iterator drops pings)."""
    httpx.delete(f"{default_server.base_url}/v1/cache", timeout=30)
    long_prompt = " ".join(f"item {i} is {i * 7 % 13}." for i in range(40))
    with client.messages.with_streaming_response.create(
            model=MODEL, max_tokens=4, stream=True, extra_body=GREEDY,
            messages=[{"role": "user", "content": long_prompt + " Which item is last?"}]
    ) as response:
        names = [line[len("event: "):] for line in response.iter_lines()
                 if line.startswith("event: ")]
    first_block = names.index("content_block_start")
    assert names[0] == "message_start" and names[-1] == "message_stop"
    assert names[1:first_block].count("ping") >= 2, names
    assert set(names[1:first_block]) == {"ping"}


def test_max_tokens_is_a_cap_clamped_to_the_context(client, default_server):
    short = ask(client, max_tokens=3)
    assert short.stop_reason == "max_tokens" and short.usage.output_tokens == 3
    # Claude Code sends max_tokens 128000, far over the 2048 context: clamped, not refused
    with client.messages.stream(model=MODEL, max_tokens=128000, messages=QUESTION,
                                system=SYSTEM, extra_body=GREEDY) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "end_turn" and "Paris" in final.content[0].text


def test_stop_sequence(client):
    message = ask(client, stop_sequences=["Paris"])
    assert message.stop_reason == "stop_sequence" and message.stop_sequence == "Paris"
    assert "Paris" not in message.content[0].text


def test_count_tokens_equals_the_engine_prompt_tokens(client):
    tools = [{"name": "get_time", "description": "The current time",
              "input_schema": {"type": "object", "properties": {}}}]
    for extra in ({}, {"tools": tools}):
        counted = client.messages.count_tokens(model=MODEL, messages=QUESTION, system=SYSTEM,
                                               **extra)
        assert counted.input_tokens == prompt_tokens(ask(client, max_tokens=2, **extra).usage)


def test_claude_code_shaped_request_is_accepted(default_server):
    """What Claude Code sends: betas, x-api-key, thinking, effort, cache_control, context
    management, metadata, system messages inside messages (one empty), a deferred tool and
    a server tool it cannot run here, max_tokens far over the context, ?beta=true."""
    body = {
        "model": MODEL, "max_tokens": 128000, "stream": True,
        "messages": [*QUESTION,
                     {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
                     {"role": "system", "content": [], "output_config": {"effort": "medium"}}],
        "system": SYSTEM, "thinking": {"type": "adaptive", "display": "omitted"},
        "output_config": {"effort": "medium"}, "metadata": {"user_id": "user_1"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015"}]},
        "tools": [{"name": "Read", "description": "Read a file", "input_schema": {
            "type": "object", "properties": {"file_path": {"type": "string"}},
            "required": ["file_path"]}, "cache_control": {"type": "ephemeral"}},
            {"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
            {"name": "Later", "input_schema": {"type": "object"}, "defer_loading": True}],
        **GREEDY,
    }
    headers = {"x-api-key": "sk-anything", "anthropic-version": "2023-06-01",
               "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14,"
                                 "context-management-2025-06-27"}
    response = post(default_server, "/v1/messages?beta=true", body, headers)
    assert response.status_code == 200, response.text
    names = [name for name, _ in sse_events(response)]
    assert names[0] == "message_start" and names[-1] == "message_stop"


def test_unknown_model_is_anthropic_404(default_server):
    response = post(default_server, "/v1/messages",
                    {"model": "claude-opus-5-5", "max_tokens": 4, "messages": QUESTION})
    assert "does not exist" in assert_anthropic_error(response, 404, "not_found_error")
    assert httpx.get(f"{default_server.base_url}/health").status_code == 200


CITY_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"},
                                                "country": {"type": "string"}},
               "required": ["city", "country"], "additionalProperties": False}


def test_output_config_format_constrains_the_answer(client):
    message = ask(client, max_tokens=60, output_config={
        "format": {"type": "json_schema", "schema": CITY_SCHEMA}})
    value = json.loads(message.content[0].text)
    assert set(value) == {"city", "country"} and all(isinstance(v, str) for v in value.values())
