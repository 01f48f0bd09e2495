"""Property: for any split of an output into chunks, the streamed result equals the
non-streamed one (content, reasoning, tool-call names and arguments), for realistic
outputs and for arbitrary mixes of markup fragments."""

from __future__ import annotations

import mlxserve  # noqa: F401
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlxserve.parsers.merge import MergedOutput, parse_chunks
from mlxserve.parsers.pipeline import OutputParser
from mlxserve.parsers.registry import make_reasoning_parser, make_tool_parser

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}}]

COMBINATIONS = [
    (None, "hermes"), ("qwen3", "hermes"), ("qwen3", "qwen3_coder"), (None, "llama3_json"),
    (None, "mistral"), ("deepseek_r1", "deepseek_v3"), (None, "pythonic"), ("gpt_oss", "gpt_oss"),
    (None, "gpt_oss"), (None, "glm45"), ("generic", None), ("deepseek_r1", None),
    ("magistral", "mistral"),
]

REALISTIC = {
    "hermes": 'Sure.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>',
    "qwen3_coder": "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n<parameter=days>\n2\n</parameter>\n</function>\n</tool_call>",
    "llama3_json": '{"name": "get_weather", "parameters": {"city": "Paris"}}; {"name": "get_weather", "parameters": {"city": "Rome"}}',
    "mistral": 'Ok[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Rome"}}]',
    "deepseek_v3": '<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{"city": "Paris"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>',
    "pythonic": '[get_weather(city="Paris"), get_weather(city="Rome", days=2)]',
    "gpt_oss": '<|channel|>analysis<|message|>Think.<|end|><|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city":"Paris"}<|call|>',
    "glm45": "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n</tool_call>",
}
THINK = "<think>\nLet me think about <tool_call> and {braces}.\n</think>\n\n"

FRAGMENTS = [
    "<think>", "</think>", "[THINK]", "[/THINK]", "<tool_call>", "</tool_call>", "<function=get_weather>", "<parameter=city>",
    "</parameter>", "</function>", "<arg_key>", "</arg_key>", "<arg_value>", "</arg_value>",
    "[TOOL_CALLS]", "[ARGS]", "[CALL_ID]", "<|python_tag|>", "<|python_start|>", "<|python_end|>",
    "<｜tool▁calls▁begin｜>", "<｜tool▁call▁begin｜>", "<｜tool▁sep｜>", "<｜tool▁call▁end｜>",
    "<｜tool▁calls▁end｜>", "<|channel|>", "<|message|>", "<|start|>", "<|end|>", "<|call|>",
    "<|return|>", "<|constrain|>", "analysis", "final", "commentary to=functions.get_weather ",
    '{"name": "get_weather", "arguments": {"city": "Paris"}}', '{"city": "Rome"}',
    "get_weather", 'get_weather(city="Paris")', "function", "```json\n", "```", "{", "}", "[", "]",
    "(", ")", '"', "'", "\\", ";", ",", "<", ">", "|", "=", " ", "\n", "\n\n", "hello", "Paris", "2",
]


def run(combination, chunks: list[str]) -> MergedOutput:
    reasoning, tools = combination
    parser = OutputParser(
        make_reasoning_parser(reasoning) if reasoning else None,
        make_tool_parser(tools, TOOLS) if tools else None,
    )
    return parse_chunks(parser, chunks)


def comparable(merged: MergedOutput):
    assert all(call.id.startswith("call_") for call in merged.tool_calls)
    return merged.content, merged.reasoning, [(call.name, call.arguments) for call in merged.tool_calls]


def split(text: str, cuts: list[int]) -> list[str]:
    points = sorted({cut % (len(text) + 1) for cut in cuts})
    bounds = [0, *points, len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]


def realistic_outputs():
    for reasoning, tools in COMBINATIONS:
        body = REALISTIC.get(tools or "", "Plain answer.")
        prefix = THINK if reasoning in ("qwen3", "generic") else ("Hmm.</think>" if reasoning == "deepseek_r1" else "")
        yield (reasoning, tools), prefix + body


REALISTIC_CASES = list(realistic_outputs())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=st.sampled_from(REALISTIC_CASES), cuts=st.lists(st.integers(0, 10_000), max_size=40))
def test_realistic_outputs_stream_like_whole(case, cuts):
    combination, text = case
    whole = comparable(run(combination, [text]))
    assert comparable(run(combination, split(text, cuts))) == whole
    if combination[1] is not None:
        assert whole[2], "the realistic output holds tool calls"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    combination=st.sampled_from(COMBINATIONS),
    pieces=st.lists(st.sampled_from(FRAGMENTS), max_size=30),
    cuts=st.lists(st.integers(0, 10_000), max_size=30),
)
def test_any_markup_mix_streams_like_whole(combination, pieces, cuts):
    text = "".join(pieces)
    whole = comparable(run(combination, [text]))
    assert comparable(run(combination, split(text, cuts))) == whole


@settings(max_examples=100, deadline=None)
@given(combination=st.sampled_from(COMBINATIONS), text=st.text(max_size=200))
def test_plain_text_streamed_char_by_char(combination, text):
    whole = comparable(run(combination, [text]))
    assert comparable(run(combination, list(text))) == whole
