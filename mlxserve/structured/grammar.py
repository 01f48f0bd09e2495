"""``StructuredOutput`` → llguidance grammar text, with the checks that need no tokenizer.

JSON is generated compactly (``{"a": 1, "b": [2, 3]}``: ", " and ": " separators, no
free whitespace): small models given free whitespace inside JSON tend to emit newlines
until max_tokens. A schema may override that with llguidance's ``x-guidance`` options.
"""

from __future__ import annotations

import json
from typing import Any

from mlxserve.errors import InvalidRequest
from mlxserve.structured.spec import (CHOICE, GRAMMAR, JSON_OBJECT, JSON_SCHEMA, REGEX,
                                      StructuredOutput)

JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
MAX_SOURCE_CHARS = 200_000  # schema / grammar / regex text


def _llguidance():
    import llguidance

    return llguidance


def _bad(spec: StructuredOutput, why: str) -> InvalidRequest:
    return InvalidRequest(f"'{spec.param}': {why}", param=spec.param)


def _check_size(spec: StructuredOutput, text: str) -> None:
    if len(text) > MAX_SOURCE_CHARS:
        raise _bad(spec, f"is longer than {MAX_SOURCE_CHARS} characters")


def json_schema_grammar(schema: Any, spec: StructuredOutput) -> str:
    if not isinstance(schema, dict):
        raise _bad(spec, "the JSON schema must be an object")
    text = json.dumps(schema)
    _check_size(spec, text)
    try:
        return _llguidance().LLMatcher.grammar_from_json_schema(text, defaults=JSON_OPTIONS)
    except (ValueError, TypeError) as e:
        raise _bad(spec, f"invalid JSON schema: {e}") from None


def _regex_grammar(spec: StructuredOutput) -> str:
    if not isinstance(spec.regex, str) or not spec.regex:
        raise _bad(spec, "the regex must be a non-empty string")
    _check_size(spec, spec.regex)
    return _llguidance().LLMatcher.grammar_from_regex(spec.regex)


def _choice_grammar(spec: StructuredOutput) -> str:
    choices = spec.choices
    if not choices or any(not isinstance(c, str) or not c for c in choices):
        raise _bad(spec, "the choices must be a non-empty list of non-empty strings")
    _check_size(spec, "".join(choices))
    lark = "start: " + " | ".join(json.dumps(c) for c in choices)
    return _llguidance().LLMatcher.grammar_from_lark(lark)


def _text_grammar(spec: StructuredOutput) -> str:
    if not isinstance(spec.grammar, str) or not spec.grammar.strip():
        raise _bad(spec, "the grammar must be a non-empty string (Lark or GBNF)")
    _check_size(spec, spec.grammar)
    try:  # "grammar" takes Lark or GBNF (GBNF is converted to Lark)
        return _llguidance().grammar_from("grammar", spec.grammar)
    except ValueError as e:
        raise _bad(spec, f"invalid grammar: {e}") from None


def grammar_for(spec: StructuredOutput) -> str:
    """The llguidance grammar for ``spec`` (validated against the tokenizer later)."""
    if spec.kind == JSON_OBJECT:
        return json_schema_grammar({"type": "object"}, spec)
    if spec.kind == JSON_SCHEMA:
        return json_schema_grammar(spec.schema, spec)
    if spec.kind == REGEX:
        return _regex_grammar(spec)
    if spec.kind == CHOICE:
        return _choice_grammar(spec)
    if spec.kind == GRAMMAR:
        return _text_grammar(spec)
    raise _bad(spec, f"unknown structured output kind {spec.kind!r}")
