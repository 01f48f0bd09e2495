"""OutputAssembler with the real parsers: any split of the same output gives the same
collected message, and tool calls turn finish_reason into "tool_calls"."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings, strategies as st

from mlxserve.engine.request import EngineDelta
from mlxserve.errors import MlxserveError
from mlxserve.parsers.registry import make_reasoning_parser, make_tool_parser
from mlxserve.parsers.pipeline import OutputParser
from mlxserve.serving.assembler import OutputAssembler, collect

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}]
OUTPUT = ('<think>Need the weather.</think>Let me check.<tool_call>\n'
          '{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>')


def deltas_for(text: str, cuts: list[int], finish: str = "stop") -> list[EngineDelta]:
    points = sorted({0, len(text), *[c % (len(text) + 1) for c in cuts]})
    pieces = [text[a:b] for a, b in zip(points, points[1:])] or [""]
    out = [EngineDelta("r", token_ids=[i], text=p) for i, p in enumerate(pieces)]
    last = out[-1]
    last.finish_reason, last.prompt_tokens, last.completion_tokens = finish, 5, len(pieces)
    return out


async def _stream(assembler: OutputAssembler, deltas: list[EngineDelta]):
    for delta in deltas:
        yield assembler.feed(delta)


def run(deltas: list[EngineDelta], parser) -> object:
    return asyncio.run(collect(_stream(OutputAssembler(parser), deltas)))


def full_parser():
    return OutputParser(make_reasoning_parser("qwen3"), make_tool_parser("hermes", TOOLS))


def test_reasoning_content_and_tool_call_are_split():
    message = run(deltas_for(OUTPUT, []), full_parser())
    assert message.reasoning == "Need the weather."
    assert message.content.strip() == "Let me check."
    assert [(c.name, c.arguments.replace(" ", "")) for c in message.tool_calls] == [
        ("get_weather", '{"city":"Paris"}')]
    assert message.tool_calls[0].id
    assert message.finish_reason == "tool_calls"
    assert message.usage.prompt_tokens == 5


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(OUTPUT)), max_size=12))
def test_any_split_collects_to_the_same_message(cuts):
    whole = run(deltas_for(OUTPUT, []), full_parser())
    split = run(deltas_for(OUTPUT, cuts), full_parser())
    assert (split.content, split.reasoning, split.finish_reason) == (
        whole.content, whole.reasoning, whole.finish_reason)
    assert [(c.name, c.arguments) for c in split.tool_calls] == [
        (c.name, c.arguments) for c in whole.tool_calls]


def test_without_parsers_text_is_content_and_length_is_kept():
    message = run(deltas_for("plain <think>text</think>", [3, 9], "length"), None)
    assert message.content == "plain <think>text</think>"
    assert message.finish_reason == "length" and message.token_ids == [0, 1, 2]


def test_engine_error_raises_typed_error():
    delta = EngineDelta("r", finish_reason="error", error="out of memory")
    with pytest.raises(MlxserveError, match="out of memory"):
        OutputAssembler().feed(delta)
