"""Structured outputs on the real Qwen2.5-Coder-0.5B (Q4_K_M GGUF, its GGUF-built 152k
tokenizer): the schema corpus greedy and sampled, and forced tool choices constrained to
hermes-style ``<tool_call>`` markup (derived from the hermes parser that ``auto`` picks),
which the parser turns into ``tool_calls``. Uses the session ``qwen_server`` (conftest)."""

from __future__ import annotations

import asyncio
import json

import openai
import pytest

from structured_support import run_corpus, validate

pytestmark = [pytest.mark.slow, pytest.mark.real_model]

MODEL = "qwen2.5-coder-0.5b"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "maxLength": 40},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["city"], "additionalProperties": False}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "Local time in a time zone",
    "parameters": {"type": "object", "properties": {"tz": {"type": "string", "maxLength": 40}},
                   "required": ["tz"], "additionalProperties": False}}}
TOOLS = [WEATHER, TIME]
PARAMETERS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
PROMPTS = ["What's the weather in Paris?", "Tell me a joke.", "What time is it in Tokyo?",
           "Hello!"]


def _ask_all(server, requests: list[dict]) -> list:
    async def main():
        async with openai.AsyncOpenAI(base_url=f"{server.base_url}/v1", api_key="unused",
                                      max_retries=0, timeout=900) as client:
            return await asyncio.gather(*(client.chat.completions.create(
                model=MODEL, tools=TOOLS, max_tokens=80, **r) for r in requests))

    return [reply.choices[0] for reply in asyncio.run(main())]


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def _check_calls(choice, names: set[str]) -> None:
    calls = choice.message.tool_calls
    assert calls, f"no tool call: {choice.message.content!r}"
    for call in calls:
        assert call.function.name in names
        validate(PARAMETERS[call.function.name], call.function.arguments)


def test_every_corpus_answer_validates_greedy_and_sampled(qwen_server):
    problems = run_corpus(f"{qwen_server.base_url}/v1", MODEL)
    assert not problems, "\n".join(problems)


def test_tool_choice_required_always_yields_a_valid_call(qwen_server):
    requests = [dict(messages=_user(p), tool_choice="required", temperature=t, seed=i,
                     parallel_tool_calls=False)
                for i, p in enumerate(PROMPTS) for t in (0.0, 1.0)]
    requests.append(dict(messages=_user(PROMPTS[0]), tool_choice="required", temperature=0.0))
    choices = _ask_all(qwen_server, requests)
    for request, choice in zip(requests, choices):
        _check_calls(choice, {"get_weather", "get_time"})
        if request.get("parallel_tool_calls") is False:
            assert choice.finish_reason == "tool_calls"
            assert len(choice.message.tool_calls) == 1 and not choice.message.content
        else:  # several calls allowed: the model can end after a call (and its newline)
            assert choice.finish_reason == "tool_calls", choice.message.tool_calls


def test_named_function_is_called_streaming_and_not(qwen_server):
    named = {"type": "function", "function": {"name": "get_time"}}
    (choice,) = _ask_all(qwen_server, [dict(messages=_user("Tell me a joke."),
                                            tool_choice=named, temperature=0.0)])
    _check_calls(choice, {"get_time"})
    assert choice.finish_reason == "tool_calls" and len(choice.message.tool_calls) == 1
    client = openai.OpenAI(base_url=f"{qwen_server.base_url}/v1", api_key="unused",
                           max_retries=0, timeout=600)
    chunks = list(client.chat.completions.create(
        model=MODEL, tools=TOOLS, max_tokens=80, messages=_user("Tell me a joke."),
        tool_choice=named, temperature=0.0, stream=True))
    pieces = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert pieces[0].function.name == "get_time"
    arguments = "".join(p.function.arguments or "" for p in pieces)
    assert json.loads(arguments) == json.loads(choice.message.tool_calls[0].function.arguments)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["tool_calls"]
