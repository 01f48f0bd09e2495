"""The protocol-neutral record of what a request's output must match.

The API layers (OpenAI ``response_format``, vLLM's ``guided_*`` / ``structured_outputs``,
forced ``tool_choice``, Anthropic/Responses formats) each build one ``StructuredOutput``;
grammar.py turns it into an llguidance grammar. Pure Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

JSON_OBJECT = "json_object"  # any JSON object
JSON_SCHEMA = "json_schema"  # ``schema`` (a JSON Schema object)
REGEX = "regex"  # ``regex`` (the whole output matches it)
CHOICE = "choice"  # ``choices``: the output is exactly one of these strings
GRAMMAR = "grammar"  # ``grammar``: Lark (llguidance syntax) or GBNF text
KINDS = (JSON_OBJECT, JSON_SCHEMA, REGEX, CHOICE, GRAMMAR)


@dataclass(frozen=True)
class StructuredOutput:
    kind: str
    schema: dict[str, Any] | None = None
    regex: str | None = None
    choices: tuple[str, ...] = ()
    grammar: str | None = None
    name: str | None = None  # json_schema name (informational)
    param: str = "response_format"  # the request field it came from, for 400s


@dataclass(frozen=True)
class ToolCallMarkup:
    """How a model writes tool calls, as its tool parser reads them: ``open``, then calls
    joined by ``separator``, then ``close``; each call is ``start`` + a JSON object
    {name_key: ..., arguments_key: {...}} + ``end``. Derived from the tool parser in use
    (serving/structured_setup.py)."""

    start: str = ""
    end: str = ""
    separator: str = "\n"
    open: str = ""
    close: str = ""
    name_key: str = "name"
    arguments_key: str = "arguments"
