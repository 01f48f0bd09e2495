"""OutputParser (reasoning then tools), the registry with auto-detection, tool_choice."""

from __future__ import annotations

import json

import mlxserve  # noqa: F401
import pytest

from mlxserve.errors import InvalidRequest
from mlxserve.parsers.merge import parse_chunks
from mlxserve.parsers.pipeline import OutputParser, apply_tool_choice
from mlxserve.parsers.registry import (
    detect_reasoning_parser,
    detect_tool_parser,
    make_reasoning_parser,
    make_tool_parser,
    reasoning_parser_names,
    tool_parser_names,
)

TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}},
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}},
]


def run(reasoning: str | None, tools: str | None, text: str, step: int):
    parser = OutputParser(
        make_reasoning_parser(reasoning) if reasoning else None,
        make_tool_parser(tools, TOOLS) if tools else None,
    )
    merged = parse_chunks(parser, [text[i : i + step] for i in range(0, len(text), step)])
    return merged.reasoning, merged.content, [(c.name, json.loads(c.arguments)) for c in merged.tool_calls]


@pytest.mark.parametrize("step", [1, 4, 1000])
def test_qwen3_reasoning_then_hermes_calls(step):
    text = (
        "<think>\nI could call <tool_call> here but I am only thinking.\n</think>\n\n"
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    )
    reasoning, content, calls = run("qwen3", "hermes", text, step)
    assert reasoning == "I could call <tool_call> here but I am only thinking."
    assert content == ""
    assert calls == [("get_weather", {"city": "Paris"})]


@pytest.mark.parametrize("step", [1, 6, 1000])
def test_gpt_oss_reasoning_then_tool_call(step):
    text = (
        "<|channel|>analysis<|message|>Weather needed.<|end|>"
        "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json"
        '<|message|>{"city":"Paris"}<|call|>'
    )
    assert run("gpt_oss", "gpt_oss", text, step) == ("Weather needed.", "", [("get_weather", {"city": "Paris"})])


def test_pipeline_without_parsers_is_identity():
    assert run(None, None, "a<tool_call>b", 2) == ("", "a<tool_call>b", [])


def test_deepseek_r1_reasoning_with_deepseek_tools():
    text = (
        "Need weather.</think>On it.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_time\n"
        "```json\n{}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>"
    )
    assert run("deepseek_r1", "deepseek_v3", text, 3) == ("Need weather.", "On it.", [("get_time", {})])


def test_names_and_unknown_name_lists_valid_ones():
    assert {"qwen3", "deepseek_r1", "gpt_oss", "generic"} <= set(reasoning_parser_names())
    expected = {"hermes", "qwen2_5", "qwen3_coder", "llama3_json", "mistral", "deepseek_v3", "pythonic", "gpt_oss", "glm45"}
    assert expected <= set(tool_parser_names())
    with pytest.raises(ValueError, match="hermes.*qwen3_coder"):
        make_tool_parser("nope", [])
    with pytest.raises(ValueError, match="deepseek_r1.*qwen3"):
        make_reasoning_parser("nope")


QWEN25_TEMPLATE = "{%- if tools %}...<tools>{{ tool | tojson }}</tools>...<tool_call>\\n{\"name\": ..."
QWEN3_CODER_TEMPLATE = "<tool_call>\n<function=example_function_name>\n<parameter=example_parameter_1>"
GLM_TEMPLATE = "<tool_call>{{ tc.name }}<arg_key>{{ k }}</arg_key><arg_value>{{ v }}</arg_value>"


@pytest.mark.parametrize(
    ("template", "vocab", "expected"),
    [
        (QWEN25_TEMPLATE, {"<tool_call>", "</tool_call>"}, "hermes"),
        (QWEN3_CODER_TEMPLATE, {"<tool_call>"}, "qwen3_coder"),
        (GLM_TEMPLATE, {"<tool_call>", "<arg_key>"}, "glm45"),
        ("{{ '[AVAILABLE_TOOLS]' }}", {"[TOOL_CALLS]"}, "mistral"),
        ("<｜tool▁calls▁begin｜>", set(), "deepseek_v3"),
        ("{{ '<|python_tag|>' }}", {"<|python_tag|>"}, "llama3_json"),
        ("<|python_start|>", {"<|python_start|>"}, "pythonic"),
        ("<|channel|>commentary to=functions.", {"<|channel|>", "<|call|>"}, "gpt_oss"),
        ("{{ messages }}", {"<s>"}, None),
        (None, set(), None),
    ],
)
def test_detect_tool_parser(template, vocab, expected):
    assert detect_tool_parser(template, vocab) == expected


@pytest.mark.parametrize(
    ("template", "vocab", "expected"),
    [
        ("{{ '<think>\\n' }}", {"<think>", "</think>"}, "qwen3"),
        ("<｜Assistant｜><think>\\n", {"<｜Assistant｜>"}, "deepseek_r1"),
        ("<|channel|>analysis<|message|>", {"<|channel|>"}, "gpt_oss"),
        ("[SYSTEM_PROMPT]", {"[THINK]", "[/THINK]"}, "magistral"),
        (QWEN25_TEMPLATE, {"<tool_call>"}, None),
    ],
)
def test_detect_reasoning_parser(template, vocab, expected):
    assert detect_reasoning_parser(template, vocab) == expected


def test_tool_choice_auto_and_default():
    assert apply_tool_choice(None, TOOLS) == (TOOLS, True, None)
    assert apply_tool_choice("auto", TOOLS) == (TOOLS, True, None)
    assert apply_tool_choice("auto", None) == (None, False, None)


def test_tool_choice_none_hides_tools_and_parsing():
    assert apply_tool_choice("none", TOOLS) == (None, False, None)


def test_tool_choice_required():
    assert apply_tool_choice("required", TOOLS) == (TOOLS, True, None)
    with pytest.raises(InvalidRequest) as error:
        apply_tool_choice("required", [])
    assert error.value.param == "tool_choice"


def test_tool_choice_named_function():
    choice = {"type": "function", "function": {"name": "get_time"}}
    assert apply_tool_choice(choice, TOOLS) == ([TOOLS[1]], True, "get_time")
    assert apply_tool_choice({"type": "tool", "name": "get_time"}, TOOLS) == ([TOOLS[1]], True, "get_time")


@pytest.mark.parametrize(
    "choice",
    ["sometimes", {"type": "function", "function": {"name": "missing"}}, {"type": "function"}, 3],
)
def test_tool_choice_invalid(choice):
    with pytest.raises(InvalidRequest) as error:
        apply_tool_choice(choice, TOOLS)
    assert error.value.param == "tool_choice"
    assert error.value.status == 400


@pytest.mark.parametrize("step", [1, 5, 1000])
def test_max_calls_keeps_the_first_call_only(step):
    text = ('<tool_call>{"name": "get_weather", "arguments": {}}</tool_call>\n'
            '<tool_call>{"name": "get_time", "arguments": {}}</tool_call>')
    parser = OutputParser(None, make_tool_parser("hermes", TOOLS), max_calls=1)
    merged = parse_chunks(parser, [text[i : i + step] for i in range(0, len(text), step)])
    assert [(c.name, c.arguments) for c in merged.tool_calls] == [("get_weather", "{}")]
    assert merged.content == ""
