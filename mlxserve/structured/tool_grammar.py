"""The grammar of a forced tool call (``tool_choice`` "required" or a named function):
one or more calls of the given tools, each written in the model's own call markup
(``ToolCallMarkup``, derived from the tool parser in use), so the parser turns the output
into ``tool_calls``. A tool's ``parameters`` schema constrains its arguments; keywords
llguidance does not implement are ignored there (``lenient``), as tools are accepted
without checking today.
"""

from __future__ import annotations

import json
from typing import Any

from mlxserve.structured.grammar import JSON_OPTIONS
from mlxserve.structured.spec import ToolCallMarkup

_TOOL_JSON_OPTIONS = dict(JSON_OPTIONS, lenient=True)
_TRAILING_NEWLINE = '"\\n"?'  # after the last call (tool parsers drop whitespace after calls)


def _function(tool: dict[str, Any]) -> dict[str, Any]:
    return tool.get("function") or {}


def _arguments_schema(function: dict[str, Any]) -> dict[str, Any]:
    parameters = function.get("parameters")
    if not isinstance(parameters, dict) or not parameters:
        return {"type": "object"}
    return parameters


def call_schema(tool: dict[str, Any], markup: ToolCallMarkup) -> dict[str, Any]:
    """JSON Schema of one call object of ``tool``: {name_key: its name, arguments_key: ...}."""
    function = _function(tool)
    return {
        "type": "object",
        "properties": {markup.name_key: {"const": function.get("name")},
                       markup.arguments_key: _arguments_schema(function)},
        "required": [markup.name_key, markup.arguments_key],
        "additionalProperties": False,
    }


def lark_literal(text: str, special_tokens: dict[str, int]) -> list[str]:
    """Lark items spelling ``text``: special tokens it contains (e.g. Qwen's
    ``<tool_call>``) as token references ``<[id]>`` (the model writes them as one token,
    which a text literal would not accept), the rest as string literals."""
    items: list[str] = []
    while text:
        hits = [(text.find(t), t) for t in special_tokens if t and t in text]
        if not hits:
            return items + [json.dumps(text)]
        at, token = min(hits, key=lambda h: (h[0], -len(h[1])))
        if at:
            items.append(json.dumps(text[:at]))
        items.append(f"<[{special_tokens[token]}]>")
        text = text[at + len(token):]
    return items


def tool_call_grammar(tools: list[dict[str, Any]], markup: ToolCallMarkup,
                      several: bool = True, special_tokens: dict[str, int] | None = None
                      ) -> str:
    """llguidance grammar text: the calls in ``markup``; one call, or one or more when
    ``several``; then optionally a newline. ``special_tokens``: the vocabulary's special
    tokens (text -> id). EOS is allowed after each complete call and after that newline:
    a model led into the markup (Qwen2.5-Coder-0.5B's own habit is a fenced object) tends
    to write a newline after ``</tool_call>`` and only then its end of turn; without the
    optional newline the grammar would force another call after it, call after call."""
    import llguidance

    def spell(text: str) -> list[str]:
        return lark_literal(text, special_tokens or {})

    schemas = [call_schema(tool, markup) for tool in tools]
    one: dict[str, Any] = schemas[0] if len(schemas) == 1 else {"anyOf": schemas}
    one = dict(one, **{"x-guidance": _TOOL_JSON_OPTIONS})
    call = " ".join(spell(markup.start) + [f"%json {json.dumps(one)}"] + spell(markup.end))
    calls = [f"call ({' '.join(spell(markup.separator))} call)*" if several else "call"]
    start = " ".join(spell(markup.open) + calls + spell(markup.close) + [_TRAILING_NEWLINE])
    return llguidance.LLMatcher.grammar_from_lark(f"start: {start}\ncall: {call}")
