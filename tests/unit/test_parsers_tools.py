"""Tool parsers on the output shapes of each family, streaming and not."""

from __future__ import annotations

import json

import mlxserve  # noqa: F401
import pytest

from mlxserve.parsers.merge import merge_deltas, parse_chunks
from mlxserve.parsers.registry import make_tool_parser

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer"},
                "metric": {"type": "boolean"},
                "hours": {"type": "array", "items": {"type": "integer"}},
                "zip": {"type": "string"},
            },
            "required": ["city"],
        },
    },
}
TOOLS = [WEATHER_TOOL] + [{"type": "function", "function": {"name": name}}
                          for name in ("write_file", "list_cities", "get_time")]


def parse(name: str, text: str, step: int | None = None):
    """(content, [(name, arguments dict)]) after checking every chunking agrees."""
    results = []
    for size in [max(1, len(text))] + ([step] if step else [1, 2, 7]):
        parser = make_tool_parser(name, TOOLS)
        merged = parse_chunks(parser, [text[i : i + size] for i in range(0, len(text), size)])
        assert all(call.id.startswith("call_") and len(call.id) > 10 for call in merged.tool_calls)
        results.append((merged.content, [(c.name, c.arguments) for c in merged.tool_calls]))
    assert all(result == results[0] for result in results)
    content, calls = results[0]
    return content, [(call_name, json.loads(arguments)) for call_name, arguments in calls]


PARIS = ("get_weather", {"city": "Paris"})
ROME = ("get_weather", {"city": "Rome"})


def test_hermes_single_call_qwen25_shape():
    text = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    assert parse("hermes", text) == ("", [PARIS])
    assert parse("qwen2_5", text) == ("", [PARIS])


def test_hermes_parallel_calls_with_text_before():
    text = (
        "I'll check both cities.\n"
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>'
    )
    assert parse("hermes", text) == ("I'll check both cities.\n", [PARIS, ROME])


def test_hermes_text_between_and_after_calls_is_content():
    call = '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'
    assert parse("hermes", f"a{call} b {call}c") == ("a b c", [PARIS, PARIS])


def test_hermes_arguments_as_json_string_and_missing_closing_tag():
    text = '<tool_call>\n{"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}\n'
    assert parse("hermes", text) == ("", [PARIS])


def test_hermes_malformed_block_is_content():
    text = 'x <tool_call>{"name": "get_weather", "arguments": {"city": </tool_call> y'
    assert parse("hermes", text) == (text, [])


def test_hermes_truncated_block_is_content():
    text = 'Sure <tool_call>{"name": "get_weather", "argum'
    assert parse("hermes", text) == (text, [])


def test_hermes_stray_start_before_a_good_call():
    text = '<tool_call>oops <tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'
    assert parse("hermes", text) == ("<tool_call>oops ", [PARIS])


def test_hermes_streaming_never_shows_partial_markup():
    parser = make_tool_parser("hermes", TOOLS)
    text = 'Hi <tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call> <b>'
    deltas = [parser.feed(char) for char in text] + [parser.finish()]
    for delta in deltas:
        assert "<tool" not in delta.content and "</tool" not in delta.content and "{" not in delta.content
    streamed = "".join(delta.content for delta in deltas)
    assert streamed == "Hi  <b>"  # text after a call keeps its leading space
    # "<" is released as soon as it cannot start a tag
    parser = make_tool_parser("hermes", TOOLS)
    assert parser.feed("a <").content == "a "
    assert parser.feed("b").content == "<b"


def test_hermes_call_deltas_are_openai_shaped():
    parser = make_tool_parser("hermes", TOOLS)
    delta = parser.feed('<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>')
    first, second = delta.tool_calls
    assert (first.index, first.name, first.arguments) == (0, "get_weather", "")
    assert first.id and first.id.startswith("call_")
    assert (second.index, second.id, second.name) == (0, None, None)
    assert json.loads(second.arguments) == {"city": "Paris"}
    assert merge_deltas([delta, parser.finish()]).tool_calls[0].id == first.id


def test_qwen3_coder_typed_by_schema():
    text = (
        "Let me look.\n<tool_call>\n<function=get_weather>\n<parameter=city>\nNew York\n</parameter>\n"
        "<parameter=days>\n3\n</parameter>\n<parameter=metric>\nfalse\n</parameter>\n"
        "<parameter=hours>\n[9, 12]\n</parameter>\n<parameter=zip>\n10001\n</parameter>\n"
        "</function>\n</tool_call>"
    )
    content, calls = parse("qwen3_coder", text)
    assert content == "Let me look.\n"
    assert calls == [
        ("get_weather", {"city": "New York", "days": 3, "metric": False, "hours": [9, 12], "zip": "10001"})
    ]


def test_qwen3_coder_multiline_value_and_parallel_calls():
    code = "def f():\n    return '<b>'\n"
    one = f"<tool_call>\n<function=write_file>\n<parameter=path>\na.py\n</parameter>\n<parameter=body>\n{code}\n</parameter>\n</function>\n</tool_call>"
    two = "<tool_call>\n<function=get_weather>\n<parameter=city>\nRome\n</parameter>\n</function>\n</tool_call>"
    content, calls = parse("qwen3_coder", one + "\n" + two)
    assert content == ""
    assert calls == [("write_file", {"path": "a.py", "body": code}), ROME]


def test_qwen3_coder_cut_off_value_is_content():
    text = "<tool_call>\n<function=get_weather>\n<parameter=city>\nPar"
    assert parse("qwen3_coder", text) == (text, [])


def test_qwen3_coder_wrong_type_stays_string():
    text = "<tool_call><function=get_weather><parameter=days>a few</parameter></function></tool_call>"
    assert parse("qwen3_coder", text) == ("", [("get_weather", {"days": "a few"})])


def test_llama3_json_bare_object_and_parallel():
    text = '{"name": "get_weather", "parameters": {"city": "Paris"}}; {"name": "get_weather", "parameters": {"city": "Rome"}}'
    assert parse("llama3_json", text) == ("", [PARIS, ROME])


def test_llama3_json_python_tag():
    text = '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}'
    assert parse("llama3_json", text) == ("", [PARIS])


def test_llama3_json_ordinary_json_answer_is_content():
    assert parse("llama3_json", '{"answer": 42}') == ('{"answer": 42}', [])
    assert parse("llama3_json", "Text with {braces}") == ("Text with {braces}", [])


def test_mistral_json_list():
    text = '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "get_weather", "arguments": {"city": "Rome"}, "id": "a1b2c3d4e"}]'
    assert parse("mistral", text) == ("", [PARIS, ROME])


def test_mistral_named_form_with_call_id():
    text = 'Checking.[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}[TOOL_CALLS]get_weather[CALL_ID]x1y2z3w4v[ARGS]{"city": "Rome"}'
    assert parse("mistral", text) == ("Checking.", [PARIS, ROME])


def test_mistral_garbage_after_marker_is_content():
    assert parse("mistral", "[TOOL_CALLS] not json") == ("[TOOL_CALLS] not json", [])


def test_deepseek_v3_fenced_calls():
    text = (
        "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n"
        '{"city": "Paris"}\n```<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>'
        'get_weather\n```json\n{"city": "Rome"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜><｜end▁of▁sentence｜>'
    )
    content, calls = parse("deepseek_v3", text)
    assert calls == [PARIS, ROME]
    assert content == "<｜end▁of▁sentence｜>"


def test_deepseek_v31_unfenced_call():
    text = 'ok<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{"city": "Paris"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>'
    assert parse("deepseek_v31", text) == ("ok", [PARIS])


def test_pythonic_calls_with_literals():
    text = "[get_weather(city='Paris', days=2, metric=True), get_weather(city=\"Rome\", hours=[1, 2])]"
    content, calls = parse("pythonic", text)
    assert content == ""
    assert calls == [
        ("get_weather", {"city": "Paris", "days": 2, "metric": True}),
        ("get_weather", {"city": "Rome", "hours": [1, 2]}),
    ]


def test_pythonic_never_evaluates_code():
    text = "[get_weather(city=__import__('os').getcwd())]"
    assert parse("pythonic", text) == (text, [])


def test_pythonic_llama4_wrapper_and_plain_brackets():
    text = '<|python_start|>[get_weather(city="Paris")]<|python_end|>'
    assert parse("pythonic", text) == ("", [PARIS])
    assert parse("pythonic", "[1, 2] are numbers") == ("[1, 2] are numbers", [])


def test_gpt_oss_tool_call_and_preamble():
    text = (
        "<|channel|>commentary<|message|>Checking the weather.<|end|>"
        "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json"
        '<|message|>{"city":"Paris"}<|call|>'
    )
    assert parse("gpt_oss", text) == ("Checking the weather.", [PARIS])


def test_gpt_oss_recipient_in_role_header_and_missing_call_token():
    text = '<|start|>assistant to=functions.get_weather<|channel|>commentary json<|message|>{"city": "Paris"}'
    assert parse("gpt_oss", text) == ("", [PARIS])


def test_gpt_oss_bad_arguments_are_content():
    text = "<|channel|>commentary to=functions.get_weather<|message|>{oops<|call|>"
    assert parse("gpt_oss", text) == (text, [])


def test_glm45_calls_typed_by_schema():
    text = (
        "I will call it.\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n"
        "<arg_key>days</arg_key>\n<arg_value>2</arg_value>\n</tool_call>\n"
        "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Rome</arg_value>\n</tool_call>"
    )
    content, calls = parse("glm45", text)
    assert content == "I will call it.\n"
    assert calls == [("get_weather", {"city": "Paris", "days": 2}), ROME]


def test_glm45_call_without_arguments():
    assert parse("glm45", "<tool_call>list_cities</tool_call>") == ("", [("list_cities", {})])


@pytest.mark.parametrize("name", ["hermes", "qwen3_coder", "glm45", "mistral", "deepseek_v3", "gpt_oss"])
def test_plain_text_passes_through_unchanged(name):
    text = "A plain answer with <angle> brackets, [squares], {braces} and | bars.\n"
    assert parse(name, text) == (text, [])


def test_hermes_bare_object_naming_a_tool_is_a_call():
    # what Qwen2.5-Coder-0.5B answers: the object without the <tool_call> tags
    text = '{"name": "get_weather", "arguments": {"city": "Paris"}}'
    assert parse("hermes", text) == ("", [PARIS])
    assert parse("hermes", text + "\n" + text.replace("Paris", "Rome")) == ("", [PARIS, ROME])


def test_hermes_bare_json_that_is_not_a_known_call_is_content():
    for text in ['{"name": "unknown_tool", "arguments": {}}', '{"answer": 42}', "{not json", "x {}"]:
        assert parse("hermes", text) == (text, [])
    parser = make_tool_parser("hermes", [])  # without tools, no bare call is accepted
    merged = parse_chunks(parser, ['{"name": "get_weather", "arguments": {}}'])
    assert merged.tool_calls == []


def test_qwen3_coder_function_without_outer_tool_call_tags():
    text = "Calling.\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\ndone"
    assert parse("qwen3_coder", text) == ("Calling.\n\ndone", [PARIS])


def test_hermes_fenced_call_naming_a_tool_is_a_call():
    # what Qwen2.5-Coder-0.5B answers under tool_choice "required": the call in a fence
    fenced = '```json\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n```'
    assert parse("hermes", fenced) == ("", [PARIS])
    assert parse("hermes", "Sure:\n" + fenced + "\nDone.") == ("Sure:\n\nDone.", [PARIS])
    listed = '```\n[{"name": "get_weather", "arguments": {"city": "Paris"}},\n {"name": "get_weather", "arguments": {"city": "Rome"}}]\n```'
    assert parse("hermes", listed) == ("", [PARIS, ROME])
    commas = fenced.replace("}}\n", '}},\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n')
    assert parse("hermes", commas) == ("", [PARIS, ROME])
    assert parse("hermes", fenced[:-4]) == ("", [PARIS])  # the output ended before the fence closed


@pytest.mark.parametrize("text", [
    '```json\n{"name": "unknown_tool", "arguments": {"city": "Paris"}}\n```',
    '```json\n{"answer": 42}\n```\nThat is all.',
    '```python\nprint({"name": "get_weather"})\n```',
    '```json\n{"name": "get_weather", "arguments": {"city": "Par',
    '```json\n{"name": "get_weather", "arguments": {}} trailing\n```',
    "Use ``` for fences, or `` ` `` for one tick.",
])
def test_hermes_fence_that_is_not_a_call_is_content(text):
    assert parse("hermes", text) == (text, [])


def test_hermes_comma_separated_bare_calls_are_all_parsed():
    text = ('{"name": "get_weather", "arguments": {"city": "Paris"}},\n'
            '{"name": "get_time", "arguments": {"city": "Paris"}}')
    assert parse("hermes", text) == ("", [PARIS, ("get_time", {"city": "Paris"})])
    assert parse("hermes", ', {"name": "get_weather", "arguments": {}}')[1] == []  # no call before


UNDECLARED_CALLS = {
    "hermes": '<tool_call>{"name": "launch_rockets", "arguments": {}}</tool_call>',
    "qwen3_coder": "<tool_call>\n<function=launch_rockets>\n</function>\n</tool_call>",
    "glm45": "<tool_call>launch_rockets\n<arg_key>a</arg_key><arg_value>1</arg_value></tool_call>",
    "llama3_json": '{"name": "launch_rockets", "parameters": {}}',
    "mistral": '[TOOL_CALLS]launch_rockets[ARGS]{"a": 1}',
    "deepseek_v3": "<｜tool▁call▁begin｜>function<｜tool▁sep｜>launch_rockets\n```json\n{}\n```<｜tool▁call▁end｜>",
    "pythonic": "[launch_rockets(a=1)]",
    "gpt_oss": "<|channel|>commentary to=functions.launch_rockets<|message|>{}<|call|>",
}


@pytest.mark.parametrize("name", sorted(UNDECLARED_CALLS))
def test_call_of_an_undeclared_tool_is_content(name):
    text = UNDECLARED_CALLS[name]
    assert parse(name, text) == (text, [])
