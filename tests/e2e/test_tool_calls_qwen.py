"""Tool calls end to end: the real Qwen2.5-Coder-0.5B (Q4_K_M GGUF) with its own chat
template, the hermes parser picked by ``auto``, and the official openai client; greedy
decoding, streaming and not."""

from __future__ import annotations

import json

import openai
import pytest

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
MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant. Use the tools when they help."},
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
    whole = ask(qwen_client).choices[0].message.tool_calls[0]
    assert json.loads(arguments) == json.loads(whole.function.arguments)


def test_tool_choice_none_gives_text(qwen_client):
    choice = ask(qwen_client, tool_choice="none").choices[0]
    assert choice.message.tool_calls in (None, [])
    assert choice.message.content and "<tool_call>" not in choice.message.content
