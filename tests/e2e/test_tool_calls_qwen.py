"""Tool calls end to end: the real Qwen2.5-Coder-0.5B (Q4_K_M GGUF) with its own chat
template, the hermes parser picked by ``auto``, and the official openai client; greedy
decoding, streaming and not."""

from __future__ import annotations

import json

import openai
import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState

pytestmark = [pytest.mark.slow, pytest.mark.real_model]

MODEL = "qwen2.5-coder-0.5b"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a given city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "The city name, e.g. Paris"}},
            "required": ["city"],
        },
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Get the current local time in a given city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]},
    },
}
SYSTEM = {"role": "system", "content": "You are a helpful assistant. Use the tools when they help."}
MESSAGES = [
    SYSTEM,
    {"role": "user", "content": "What is the weather like in Paris right now?"},
]


@pytest.fixture(scope="module")
def qwen_client(qwen_server):
    return openai.OpenAI(base_url=f"{qwen_server.base_url}/v1", api_key="unused", max_retries=0,
                         timeout=300)


def ask(client: openai.OpenAI, **extra):
    return client.chat.completions.create(
        model=MODEL, messages=MESSAGES, tools=[WEATHER_TOOL], temperature=0, max_tokens=128, **extra
    )


def test_tool_call_non_streaming(qwen_client):
    choice = ask(qwen_client).choices[0]
    assert choice.finish_reason == "tool_calls"
    assert not (choice.message.content or "").strip()
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments)["city"].lower() == "paris"


def test_tool_call_streaming_matches_non_streaming(qwen_client):
    chunks = list(ask(qwen_client, stream=True))
    for chunk in chunks:  # as OpenAI: one entry per call index in a chunk
        indices = [tc.index for c in chunk.choices for tc in (c.delta.tool_calls or [])]
        assert len(indices) == len(set(indices)), chunk
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    pieces = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert pieces, "no tool_call deltas were streamed"
    first = pieces[0]
    assert first.index == 0 and first.id.startswith("call_") and first.function.name == "get_weather"
    assert all(piece.index == 0 for piece in pieces)
    arguments = "".join(piece.function.arguments or "" for piece in pieces)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["tool_calls"]
    assert "<tool_call>" not in content and not content.strip()
    whole = ask(qwen_client).choices[0].message
    assert json.loads(arguments) == json.loads(whole.tool_calls[0].function.arguments)
    state = ChatCompletionStreamState()  # how the SDK's stream helper assembles a message
    for chunk in chunks:
        state.handle_chunk(chunk)
    assembled = state.get_final_completion().choices[0].message
    assert assembled.content is None and whole.content is None
    assert [c.function.name for c in assembled.tool_calls] == ["get_weather"]


def test_required_tool_choice_gives_valid_calls_of_declared_tools(qwen_client):
    """Under "required" decoding is constrained to the parser's call markup (issue 10), so
    every call is a declared tool with JSON arguments. With parallel calls allowed the
    grammar lets the model end after any complete call (and the newline this model writes
    after ``</tool_call>``), so it stops instead of repeating calls until max_tokens."""
    choice = qwen_client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "What's the weather in Paris?"}],
        tools=[WEATHER_TOOL, TIME_TOOL], tool_choice="required", temperature=0,
        max_tokens=128).choices[0]
    calls = choice.message.tool_calls
    assert choice.finish_reason == "tool_calls", calls
    assert calls and calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments) == {"city": "Paris"}
    assert all(c.function.name in ("get_weather", "get_time") for c in calls)
    assert all(isinstance(json.loads(c.function.arguments), dict) for c in calls)


def test_parallel_tool_calls_false_gives_at_most_one_call(qwen_client):
    question = {"role": "user", "content": "What's the weather and the local time in Paris?"}
    request = {"model": MODEL, "messages": [SYSTEM, question], "tools": [WEATHER_TOOL, TIME_TOOL],
               "temperature": 0, "max_tokens": 128}
    both = qwen_client.chat.completions.create(**request).choices[0].message.tool_calls
    assert [c.function.name for c in both] == ["get_weather", "get_time"]  # the model's habit
    one = qwen_client.chat.completions.create(**request, parallel_tool_calls=False).choices[0]
    assert one.finish_reason == "tool_calls"
    assert [(c.function.name, c.function.arguments) for c in one.message.tool_calls] == [
        (both[0].function.name, both[0].function.arguments)]


def test_tool_choice_none_gives_text(qwen_client):
    choice = ask(qwen_client, tool_choice="none").choices[0]
    assert choice.message.tool_calls in (None, [])
    assert choice.message.content and "<tool_call>" not in choice.message.content
