"""Which output parsers a request gets: reasoning and tool-call parsers by name, resolved
once at start-up ("auto" detection included), and the per-request tool plan.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from mlxserve.errors import InvalidRequest, MlxserveError


class ServingSetupError(MlxserveError):
    """A start-up setting cannot be honoured (unknown parser name, ...)."""

    code = "setup_error"


@dataclass(frozen=True)
class ParserSettings:
    reasoning_parser: str | None = None  # a registered name, resolved ("auto" decided)
    tool_call_parser: str | None = None
    enable_auto_tool_choice: bool = False


@dataclass
class ToolSetup:
    template_tools: list[dict[str, Any]] | None = None  # tools the chat template renders
    parser_tools: list[dict[str, Any]] | None = None  # None: no tool-call parsing
    max_calls: int | None = None  # 1 when parallel tool calls are off


def _parsers_module(name: str) -> Any:
    try:
        return importlib.import_module(f"mlxserve.parsers.{name}")
    except ImportError as e:
        raise ServingSetupError(f"output parsers are not available: {e}") from None


def _vocab(tokenizer: Any) -> dict[str, int]:
    get_vocab = getattr(tokenizer, "get_vocab", None)
    return dict(get_vocab()) if get_vocab else {}


def _resolve_one(kind: str, name: str | None, chat_template: str, vocab: dict[str, int]
                 ) -> str | None:
    if not name:
        return None
    registry = _parsers_module("registry")
    if name == "auto":
        detect = getattr(registry, f"detect_{kind}_parser")
        return detect(chat_template, vocab)
    try:
        if kind == "reasoning":
            registry.reasoning_parser_class(name)
        else:
            registry.tool_parser_class(name)
    except (KeyError, ValueError) as e:
        raise ServingSetupError(str(e)) from None
    return name


def check_parser_names(reasoning: str | None, tool_call: str | None) -> None:
    """Fail early (before the model loads) on parser names the registry does not know."""
    vocab: dict[str, int] = {}
    for kind, name in (("reasoning", reasoning), ("tool", tool_call)):
        if name and name != "auto":
            _resolve_one(kind, name, "", vocab)


def resolve_parser_settings(reasoning: str | None, tool_call: str | None,
                            enable_auto_tool_choice: bool, tokenizer: Any,
                            chat_template: str | None) -> ParserSettings:
    """Check the parser names against the registry; decide "auto" from the template+vocab."""
    template = chat_template or getattr(tokenizer, "chat_template", None) or ""
    vocab = _vocab(tokenizer) if "auto" in (reasoning, tool_call) else {}
    return ParserSettings(
        reasoning_parser=_resolve_one("reasoning", reasoning, template, vocab),
        tool_call_parser=_resolve_one("tool", tool_call, template, vocab),
        enable_auto_tool_choice=enable_auto_tool_choice,
    )


def _check_tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise InvalidRequest("'tools' must be an array", param="tools")
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if (not isinstance(tool, dict) or tool.get("type", "function") != "function"
                or not isinstance(function, dict) or not isinstance(function.get("name"), str)):
            raise InvalidRequest(f"tools[{i}] must be {{'type': 'function', 'function': "
                                 "{'name': ..., 'parameters': ...}}", param="tools")
    return tools


def plan_tools(tools: Any, tool_choice: Any, settings: ParserSettings,
               parallel_tool_calls: bool = True) -> ToolSetup:
    """Which tools the template renders and the parser looks for, given tool_choice.

    Without a tool parser, tools still reach the template when tool_choice is left out
    (the client then reads calls from the text); asking for a tool_choice is a 400.
    """
    if tool_choice is not None and not isinstance(tool_choice, (str, dict)):
        raise InvalidRequest("'tool_choice' must be a string or an object", param="tool_choice")
    if tools is not None:
        tools = _check_tools(tools)
    apply_tool_choice = _parsers_module("pipeline").apply_tool_choice
    template_tools, parse_calls, _ = apply_tool_choice(tool_choice, tools)
    if not parse_calls:
        return ToolSetup(template_tools=template_tools)
    if settings.tool_call_parser is None:
        if tool_choice is None:
            return ToolSetup(template_tools=template_tools)
        raise InvalidRequest("tool_choice needs a server started with --tool-call-parser "
                             "and --enable-auto-tool-choice", param="tool_choice")
    if tool_choice in (None, "auto") and not settings.enable_auto_tool_choice:
        if tool_choice is None:
            return ToolSetup(template_tools=template_tools)
        raise InvalidRequest('"auto" tool choice needs a server started with '
                             "--enable-auto-tool-choice", param="tool_choice")
    return ToolSetup(template_tools=template_tools, parser_tools=template_tools,
                     max_calls=None if parallel_tool_calls else 1)


def make_output_parser(settings: ParserSettings, tool_setup: ToolSetup | None,
                       prompt_opens_reasoning: bool) -> Any | None:
    """A fresh pipeline.OutputParser for one request, or None when nothing is parsed."""
    tools = tool_setup.parser_tools if tool_setup else None
    if settings.reasoning_parser is None and tools is None:
        return None
    registry = _parsers_module("registry")
    reasoning = None
    if settings.reasoning_parser is not None:
        reasoning = registry.make_reasoning_parser(
            settings.reasoning_parser, prompt_opens_reasoning=prompt_opens_reasoning)
    tool_parser = None
    if tools is not None:
        tool_parser = registry.make_tool_parser(settings.tool_call_parser, tools)
    max_calls = tool_setup.max_calls if tool_setup else None
    return _parsers_module("pipeline").OutputParser(reasoning, tool_parser, max_calls)


_PROBE_TOOLS = [{"type": "function", "function": {"name": "probe", "parameters": {}}}]


def hidden_special_ids(tokenizer: Any, settings: ParserSettings) -> frozenset[int]:
    """The tokenizer's special tokens to keep out of the output text (vLLM's default
    ``skip_special_tokens``: a stray ``<|im_start|>`` is not content), less those the
    server's parsers read as markup (harmony's ``<|channel|>``, DeepSeek's tool markers,
    ``<|python_tag|>``...): a token stays when, fed alone to a fresh parser, it is not
    passed through as content or reasoning."""
    added = getattr(tokenizer, "added_tokens_decoder", None) or {}
    special = {int(i): str(getattr(t, "content", t)) for i, t in added.items()
               if getattr(t, "special", False)}
    return frozenset(i for i, text in special.items() if not _parsed_as_markup(text, settings))


def _parsed_as_markup(text: str, settings: ParserSettings) -> bool:
    tools = _PROBE_TOOLS if settings.tool_call_parser else None
    for opens in (False, True):
        parser = make_output_parser(settings, ToolSetup(tools, tools), opens)
        if parser is None:
            return False
        delta = parser.feed(text)
        if text not in (delta.content, delta.reasoning):
            return True
    return False


def reasoning_end_tag(settings: ParserSettings) -> str | None:
    """The tag that closes reasoning for the server's reasoning parser, when it has one."""
    if settings.reasoning_parser is None:
        return None
    parser_class = _parsers_module("registry").reasoning_parser_class(settings.reasoning_parser)
    return getattr(parser_class, "end_tag", None)
