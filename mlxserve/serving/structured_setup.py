"""Which grammar a request's output follows, compiled for the model's tokenizer.

A request's ``StructuredOutput`` (response_format, guided_*, structured_outputs, or a
protocol's own format field), or, for ``tool_choice`` "required" / a named function, a
call of the given tools in the call markup the server's tool parser reads. Compiling runs
off the event loop; one compiled prototype per grammar text is kept and forked per
request, so a burst of requests with one schema compiles it once.
"""

from __future__ import annotations

import importlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from mlxserve.errors import InvalidRequest
from mlxserve.structured.constraint import GrammarConstraint, compile_constraint
from mlxserve.structured.grammar import grammar_for
from mlxserve.structured.spec import StructuredOutput, ToolCallMarkup
from mlxserve.structured.tokenizer import LazyGrammarTokenizer
from mlxserve.structured.tool_grammar import tool_call_grammar

_CACHED_GRAMMARS = 64
FORCED_TOOL_CALL = StructuredOutput("tool call", param="tools")  # names 400s on tool schemas


class GrammarCompiler:
    """Compiles grammars for one model; thread-safe (called through asyncio.to_thread)."""

    def __init__(self, model: Any):
        vocab = model.capabilities.vocab_size or model.config.get("vocab_size")
        self._tokenizer = LazyGrammarTokenizer(model.tokenizer, vocab, model.eos_token_ids)
        self._prototypes: OrderedDict[str, GrammarConstraint] = OrderedDict()
        self._lock = threading.Lock()

    def compile(self, spec: StructuredOutput, grammar: str | None = None) -> GrammarConstraint:
        """A fresh constraint for one request (fork it for more choices)."""
        text = grammar if grammar is not None else grammar_for(spec)
        with self._lock:
            proto = self._prototypes.get(text)
            if proto is not None:
                self._prototypes.move_to_end(text)
                return proto.fork()
        proto = compile_constraint(spec, self._tokenizer.get(), text)
        with self._lock:
            self._prototypes[text] = proto
            while len(self._prototypes) > _CACHED_GRAMMARS:
                self._prototypes.popitem(last=False)
        return proto.fork()

    def compile_tool_call(self, forced: ForcedToolCall) -> GrammarConstraint:
        special = self._tokenizer.special_tokens()
        grammar = tool_call_grammar(forced.tools, forced.markup, forced.several, special)
        return self.compile(FORCED_TOOL_CALL, grammar)


def _parser_class(module: str, cls: str) -> type | None:
    try:
        return getattr(importlib.import_module(f"mlxserve.parsers.tools.{module}"), cls)
    except (ImportError, AttributeError):
        return None


def tool_call_markup(parser_name: str | None) -> ToolCallMarkup | None:
    """The call markup the named tool parser reads, for the formats whose calls are JSON
    objects; None for the others (their forced calls are left to the prompt)."""
    if not parser_name:
        return None
    registry = importlib.import_module("mlxserve.parsers.registry")
    parser = registry.tool_parser_class(parser_name)
    hermes = _parser_class("hermes", "HermesToolParser")
    llama3 = _parser_class("llama3_json", "Llama3JsonToolParser")
    mistral = _parser_class("mistral", "MistralToolParser")
    if hermes and issubclass(parser, hermes):
        return ToolCallMarkup(start=parser.start_markers[0] + "\n", end="\n" + parser.end_marker)
    if llama3 and issubclass(parser, llama3):
        return ToolCallMarkup(separator="; ", arguments_key="parameters")
    if mistral and issubclass(parser, mistral):
        return ToolCallMarkup(open=parser.start_markers[0] + "[", close="]", separator=", ")
    return None


@dataclass(frozen=True)
class ForcedToolCall:
    """tool_choice "required" (one or more calls) or a named function (one call)."""

    tools: list[dict]
    markup: ToolCallMarkup
    several: bool


def forced_tool_call(tool_choice: Any, parser_tools: list[dict] | None,
                     parser_name: str | None, parallel_tool_calls: bool | None
                     ) -> ForcedToolCall | None:
    """What a forced tool choice constrains, or None when the choice forces nothing or
    the parser's markup is not one we can write."""
    forced = tool_choice == "required" or isinstance(tool_choice, dict)
    if not forced or not parser_tools:
        return None
    markup = tool_call_markup(parser_name)
    if markup is None:
        return None
    several = tool_choice == "required" and parallel_tool_calls is not False
    return ForcedToolCall(list(parser_tools), markup, several)


def check_one_source(spec: StructuredOutput | None, forced: ForcedToolCall | None) -> None:
    if spec is not None and forced is not None:
        raise InvalidRequest(f"'{spec.param}' cannot be combined with a forced tool_choice "
                             "(the output is then a tool call)", param=spec.param)
