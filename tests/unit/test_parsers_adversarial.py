"""Crafted inputs: long repeated markers, unbalanced brackets, nested quotes. Every parser
must finish quickly (linear scanning, no backtracking) and fall back to content."""

from __future__ import annotations

import time

import mlxserve  # noqa: F401
import pytest

from mlxserve.parsers.merge import parse_chunks
from mlxserve.parsers.pipeline import OutputParser
from mlxserve.parsers.registry import make_reasoning_parser, make_tool_parser, tool_parser_names

SIZE = 200_000
TIME_LIMIT_S = 2.0


def repeat(unit: str) -> str:
    return unit * (SIZE // len(unit))


ADVERSARIAL = {
    "tool_call_open_brace": repeat("<tool_call>{"),
    "open_braces": "<tool_call>" + repeat("{"),
    "json_open_braces": repeat("{"),
    "open_brackets": repeat("["),
    "nested_calls": repeat("[a("),
    "nested_quotes": '<tool_call>{"name": "' + repeat('\\"\'"'),
    "mistral_markers": repeat("[TOOL_CALLS]"),
    "mistral_args": "[TOOL_CALLS]f[ARGS]" + repeat('{"a": ['),
    "harmony_headers": repeat("<|channel|>"),
    "harmony_open_call": "<|channel|>commentary to=functions.f<|message|>" + repeat("{"),
    "qwen3_coder_params": "<tool_call><function=f>" + repeat("<parameter=") + "</function></tool_call>",
    "glm_keys": "<tool_call>f" + repeat("<arg_key>") + "</tool_call>",
    "deepseek_begins": repeat("<｜tool▁call▁begin｜>function<｜tool▁sep｜>"),
    "partial_markers": repeat("<tool_cal<|chan<｜tool▁"),
    "think_opens": repeat("<think>"),
}


def run_timed(tool_name: str, reasoning: str | None, text: str, chunk: int):
    parser = OutputParser(make_reasoning_parser(reasoning) if reasoning else None, make_tool_parser(tool_name, []))
    started = time.perf_counter()
    merged = parse_chunks(parser, [text[i : i + chunk] for i in range(0, len(text), chunk)])
    return merged, time.perf_counter() - started


@pytest.mark.parametrize("tool_name", tool_parser_names())
@pytest.mark.parametrize("case", sorted(ADVERSARIAL))
def test_adversarial_input_whole_is_fast_and_safe(tool_name, case):
    text = ADVERSARIAL[case]
    merged, elapsed = run_timed(tool_name, None, text, len(text))
    assert elapsed < TIME_LIMIT_S, f"{tool_name} on {case}: {elapsed:.2f}s"
    produced = len(merged.content) + sum(len(call.arguments) for call in merged.tool_calls)
    header_flood = tool_name in ("gpt_oss", "harmony") and case == "harmony_headers"
    assert produced > 0 or header_flood  # an unfinished harmony header is markup only


@pytest.mark.parametrize(("tool_name", "reasoning"), [
    ("hermes", "qwen3"), ("qwen3_coder", None), ("mistral", None), ("llama3_json", None),
    ("pythonic", None), ("gpt_oss", "gpt_oss"), ("deepseek_v3", "deepseek_r1"), ("glm45", None),
])
@pytest.mark.parametrize("case", ["tool_call_open_brace", "open_braces", "nested_quotes", "mistral_args",
                                  "harmony_open_call", "partial_markers", "nested_calls"])
def test_adversarial_input_streamed_is_fast(tool_name, reasoning, case):
    text = ADVERSARIAL[case][: SIZE // 4]
    _, elapsed = run_timed(tool_name, reasoning, text, 7)
    assert elapsed < TIME_LIMIT_S, f"{tool_name}+{reasoning} on {case}: {elapsed:.2f}s"


def test_unterminated_hermes_flood_is_returned_as_content():
    text = ADVERSARIAL["tool_call_open_brace"]
    merged, _ = run_timed("hermes", None, text, 4096)
    assert merged.content == text and merged.tool_calls == []


def test_long_valid_arguments_stream_in_linear_time():
    body = "x" * 100_000
    text = '<tool_call>{"name": "write", "arguments": {"text": "' + body + '"}}</tool_call>'
    merged, elapsed = run_timed("hermes", "qwen3", text, 5)
    assert elapsed < TIME_LIMIT_S
    assert merged.tool_calls[0].name == "write" and body in merged.tool_calls[0].arguments
