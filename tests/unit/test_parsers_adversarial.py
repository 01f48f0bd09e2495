"""Crafted inputs: long repeated markers, unbalanced brackets, nested quotes. Every parser
must scan linearly (no backtracking) and fall back to content, exactly.

Speed is checked as a scaling ratio, never against a clock: the time for an input 10x
longer must grow like 10x (linear), far from the 100x of a quadratic scan.
"""

from __future__ import annotations

import gc
import time

import mlxserve  # noqa: F401
import pytest

from mlxserve.parsers.merge import parse_chunks
from mlxserve.parsers.pipeline import OutputParser
from mlxserve.parsers.registry import (TOOL_PARSERS, make_reasoning_parser, make_tool_parser,
                                       tool_parser_names)

SIZE = 200_000
SCALE = 10  # the long input is SCALE times the short one
MAX_GROWTH = 5 * SCALE  # linear gives ~SCALE to 2.5 SCALE (caches, noise); quadratic ~SCALE**2


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
    # held whitespace (where a bare call may still start), scanned once, not once per chunk
    "spaces": repeat(" "),
    "fence_spaces": "```json\n{}" + repeat(" "),
    "marker_spaces": "[TOOL_CALLS]" + repeat(" \n"),
    "python_tag_spaces": "<|python_tag|>" + repeat(" "),
}


def run(tool_name: str, reasoning: str | None, text: str, chunk: int):
    parser = OutputParser(make_reasoning_parser(reasoning) if reasoning else None, make_tool_parser(tool_name, []))
    return parse_chunks(parser, [text[i : i + chunk] for i in range(0, len(text), chunk)])


def best_time(tool_name: str, reasoning: str | None, text: str, chunk: int, repeats: int) -> float:
    """Least CPU time of this process over ``repeats`` runs (CPU time, not wall time: the
    time the machine's other work takes from us does not count), with the collector off."""
    times = []
    gc.collect()
    gc.disable()  # a full-suite process has a large heap: a collection inside the long run
    try:          # cost more than the scan itself and made the ratio flaky
        for _ in range(repeats):
            started = time.process_time()
            run(tool_name, reasoning, text, chunk)
            times.append(time.process_time() - started)
    finally:
        gc.enable()
    return min(times)


def assert_linear(tool_name: str, reasoning: str | None, text: str, chunk: int) -> None:
    """Time on ``text`` vs on its first tenth: the ratio of a linear scan is ~SCALE."""
    short = text[: len(text) // SCALE]
    ratio = best_time(tool_name, reasoning, text, chunk, 2) / max(
        best_time(tool_name, reasoning, short, chunk, 3), 1e-4)
    assert ratio < MAX_GROWTH, f"{tool_name}+{reasoning}: {SCALE}x the input took {ratio:.0f}x the time"


# one name per parser class (aliases such as qwen2_5 = hermes scan the same way)
DISTINCT_TOOL_PARSERS = sorted({TOOL_PARSERS[name]: name for name in reversed(tool_parser_names())}.values())


def is_header_flood(tool_name: str, case: str) -> bool:
    # a harmony header that never reaches <|message|> is markup only (no text to return)
    return tool_name in ("gpt_oss", "harmony") and case == "harmony_headers"


@pytest.mark.parametrize("tool_name", tool_parser_names())
@pytest.mark.parametrize("case", sorted(ADVERSARIAL))
def test_adversarial_input_is_returned_as_content(tool_name, case):
    """No tools declared and no plausible call in the text: everything comes back as
    content, character for character, and no tool call appears."""
    text = ADVERSARIAL[case]
    merged = run(tool_name, None, text, len(text))
    assert merged.tool_calls == [], f"{tool_name} on {case}: {[c.name[:40] for c in merged.tool_calls]}"
    expected = "" if is_header_flood(tool_name, case) else text
    assert merged.content == expected, f"{tool_name} on {case}: content differs"


@pytest.mark.parametrize("tool_name", DISTINCT_TOOL_PARSERS)
@pytest.mark.parametrize("case", sorted(ADVERSARIAL))
def test_adversarial_input_whole_scans_linearly(tool_name, case):
    assert_linear(tool_name, None, ADVERSARIAL[case], SIZE)


@pytest.mark.parametrize(("tool_name", "reasoning"), [
    ("hermes", "qwen3"), ("qwen3_coder", None), ("mistral", None), ("llama3_json", None),
    ("pythonic", None), ("gpt_oss", "gpt_oss"), ("deepseek_v3", "deepseek_r1"), ("glm45", None),
])
@pytest.mark.parametrize("case", ["tool_call_open_brace", "open_braces", "nested_quotes", "mistral_args",
                                  "harmony_open_call", "partial_markers", "nested_calls", "spaces",
                                  "fence_spaces", "marker_spaces", "python_tag_spaces"])
def test_adversarial_input_streamed_scans_linearly(tool_name, reasoning, case):
    assert_linear(tool_name, reasoning, ADVERSARIAL[case][: SIZE // 4], 7)


def test_unterminated_hermes_flood_is_returned_as_content():
    text = ADVERSARIAL["tool_call_open_brace"]
    merged = run("hermes", None, text, 4096)
    assert merged.content == text and merged.tool_calls == []


@pytest.mark.parametrize("tool_name", ["hermes", "llama3_json", "pythonic", "mistral"])
def test_whitespace_after_a_call_streams_in_linear_time(tool_name):
    call = {"hermes": '<tool_call>{"name": "f", "arguments": {}}</tool_call>',
            "llama3_json": '{"name": "f", "parameters": {}};', "pythonic": "[f()]",
            "mistral": '[TOOL_CALLS]f[ARGS]{}'}[tool_name]
    text = call + repeat(" ")[: SIZE // 4]
    assert [c.name for c in run(tool_name, None, text, 7).tool_calls] == ["f"]
    assert_linear(tool_name, None, text, 7)


def test_long_valid_arguments_stream_in_linear_time():
    body = "x" * 100_000
    text = '<tool_call>{"name": "write", "arguments": {"text": "' + body + '"}}</tool_call>'
    merged = run("hermes", "qwen3", text, 5)
    assert merged.tool_calls[0].name == "write" and body in merged.tool_calls[0].arguments
    short = text.replace(body, body[: len(body) // SCALE])
    ratio = best_time("hermes", "qwen3", text, 5, 2) / best_time("hermes", "qwen3", short, 5, 5)
    assert ratio < MAX_GROWTH, f"{SCALE}x the arguments took {ratio:.0f}x the time"
