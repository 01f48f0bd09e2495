"""Structured outputs without a model: API fields → StructuredOutput, grammars, tool-call
markup derived from the parsers, special-token spelling, and the checks that give 400s."""

from __future__ import annotations

import llguidance
import pytest

from mlxserve.api.openai.structured_fields import StructuredFields
from mlxserve.errors import InvalidRequest
from mlxserve.serving.structured_setup import forced_tool_call, tool_call_markup
from mlxserve.structured.grammar import grammar_for
from mlxserve.structured.spec import StructuredOutput, ToolCallMarkup
from mlxserve.structured.tool_grammar import lark_literal, tool_call_grammar

TOOL = {"type": "function", "function": {"name": "f", "parameters": {
    "type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}}}


def _spec(**fields) -> StructuredOutput | None:
    return StructuredFields(**fields).structured_output()


def test_api_fields_become_one_structured_output():
    schema = {"type": "object"}
    assert _spec() is None and _spec(response_format={"type": "text"}) is None
    assert _spec(response_format={"type": "json_object"}).kind == "json_object"
    s = _spec(response_format={"type": "json_schema",
                               "json_schema": {"name": "n", "schema": schema, "strict": True}})
    assert (s.kind, s.schema, s.name, s.param) == ("json_schema", schema, "n", "response_format")
    assert _spec(guided_json='{"type": "object"}').schema == schema
    assert _spec(guided_choice=["a", "b"]).choices == ("a", "b")
    assert _spec(structured_outputs={"regex": "a+"}).param == "structured_outputs.regex"
    assert _spec(structured_outputs={"json_object": True}).kind == "json_object"
    with pytest.raises(InvalidRequest, match="only one"):
        _spec(guided_regex="a", guided_choice=["a"])


def test_grammars_for_each_kind_validate():
    for spec in (StructuredOutput("json_object"), StructuredOutput("regex", regex="[0-9]+"),
                 StructuredOutput("choice", choices=("yes", "no")),
                 StructuredOutput("grammar", grammar='root ::= "a" | "b"'),
                 StructuredOutput("grammar", grammar='start: "a"+')):
        error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar_for(spec))
        assert not error, messages
    with pytest.raises(InvalidRequest) as info:
        grammar_for(StructuredOutput("json_schema", schema=[1], param="guided_json"))
    assert info.value.param == "guided_json"


def test_markup_comes_from_the_tool_parser():
    hermes = tool_call_markup("qwen2_5")
    assert (hermes.start, hermes.end) == ("<tool_call>\n", "\n</tool_call>")
    assert tool_call_markup("llama3_json").arguments_key == "parameters"
    assert tool_call_markup("mistral").open == "[TOOL_CALLS]["
    assert tool_call_markup("qwen3_coder") is None and tool_call_markup(None) is None
    assert forced_tool_call("auto", [TOOL], "hermes", True) is None
    assert forced_tool_call("required", [TOOL], "hermes", True).several
    assert not forced_tool_call("required", [TOOL], "hermes", False).several
    assert not forced_tool_call({"type": "function", "function": {"name": "f"}}, [TOOL],
                                "hermes", True).several


def test_special_tokens_are_spelled_as_token_references():
    special = {"<tool_call>": 7, "</tool_call>": 8}
    assert lark_literal("<tool_call>\n", special) == ["<[7]>", '"\\n"']
    assert lark_literal("\n</tool_call>", special) == ['"\\n"', "<[8]>"]
    assert lark_literal("plain", special) == ['"plain"']
    grammar = tool_call_grammar([TOOL], ToolCallMarkup("<tool_call>\n", "\n</tool_call>"),
                                True, special)
    assert "<[7]>" in grammar and "<[8]>" in grammar


@pytest.mark.parametrize("several", [True, False])
def test_forced_calls_may_end_after_a_call_and_its_newline(several):
    """EOS is allowed after a complete call and after one newline following it (a model
    that writes that newline would otherwise be forced into another call, until
    max_tokens); more calls only when ``several``."""
    tokenizer = llguidance.LLTokenizer("byte")
    grammar = tool_call_grammar([TOOL], ToolCallMarkup("<tool_call>\n", "\n</tool_call>"),
                                several)
    matcher = llguidance.LLMatcher(tokenizer, grammar, log_level=0)
    call = '<tool_call>\n{"name": "f", "arguments": {"x": 1}}\n</tool_call>'
    accepting = []
    for piece in (call, "\n"):
        assert matcher.consume_tokens(tokenizer.tokenize_str(piece)), matcher.get_error()
        accepting.append(matcher.is_accepting())
    assert accepting == [True, True]
    assert matcher.try_consume_tokens(tokenizer.tokenize_str("<tool_call>")) == (
        len("<tool_call>") if several else 0)
