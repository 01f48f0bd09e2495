"""Reasoning parser, then tool parser, over one request's output; and tool_choice rules.

``OutputParser.feed`` sends text through the reasoning parser first; only the content it
lets through reaches the tool parser (tool markup inside reasoning stays reasoning).
"""

from __future__ import annotations

from ..errors import InvalidRequest
from .base import ParsedDelta, ReasoningParser, ToolParser
from .tools.arguments import tool_name


class OutputParser:
    """``max_calls`` (e.g. 1 for ``parallel_tool_calls: false``) keeps the first calls and
    drops the markup of any later one."""

    def __init__(self, reasoning: ReasoningParser | None, tools: ToolParser | None,
                 max_calls: int | None = None):
        self.reasoning = reasoning
        self.tools = tools
        self.max_calls = max_calls

    def feed(self, text: str) -> ParsedDelta:
        first = self.reasoning.feed(text) if self.reasoning else ParsedDelta(content=text)
        return self._through_tools(first, finishing=False)

    def finish(self) -> ParsedDelta:
        first = self.reasoning.finish() if self.reasoning else ParsedDelta()
        return self._through_tools(first, finishing=True)

    def _through_tools(self, first: ParsedDelta, *, finishing: bool) -> ParsedDelta:
        if self.tools is None:
            return first
        second = self.tools.feed(first.content) if first.content else ParsedDelta()
        if finishing:
            last = self.tools.finish()
            second.content += last.content
            second.tool_calls.extend(last.tool_calls)
        calls = second.tool_calls
        if self.max_calls is not None:
            calls = [call for call in calls if call.index < self.max_calls]
        return ParsedDelta(content=second.content, reasoning=first.reasoning, tool_calls=calls)


def _choice_kind(tool_choice: str | dict | None) -> tuple[str, str | None]:
    """("auto" | "none" | "required" | "named", name) from OpenAI or Anthropic forms."""
    if tool_choice is None:
        return "auto", None
    if isinstance(tool_choice, str):
        if tool_choice in ("auto", "none", "required"):
            return tool_choice, None
        raise InvalidRequest(
            f"tool_choice must be 'auto', 'none', 'required' or a function, not {tool_choice!r}",
            param="tool_choice",
        )
    if isinstance(tool_choice, dict):
        kind = tool_choice.get("type")
        if kind == "function":
            function = tool_choice.get("function")
            name = function.get("name") if isinstance(function, dict) else None
            if isinstance(name, str) and name:
                return "named", name
        elif kind == "tool" and isinstance(tool_choice.get("name"), str):  # Anthropic
            return "named", tool_choice["name"]
        elif kind in ("auto", "none"):  # Anthropic
            return kind, None
        elif kind == "any":  # Anthropic
            return "required", None
    raise InvalidRequest(
        "tool_choice object must be {'type': 'function', 'function': {'name': ...}}",
        param="tool_choice",
    )


def apply_tool_choice(
    tool_choice: str | dict | None, tools: list[dict] | None
) -> tuple[list[dict] | None, bool, str | None]:
    """(tools for the chat template, parse tool calls?, required function name).

    ``none`` hides the tools and turns parsing off; ``required`` and a named function need
    tools (a named one must exist) and narrow nothing but the template for the named case,
    which shows only that tool. Constrained decoding is not done here.
    """
    kind, name = _choice_kind(tool_choice)
    tools = list(tools or [])
    if kind == "none" or (kind == "auto" and not tools):
        return None, False, None
    if kind == "auto":
        return tools, True, None
    if not tools:
        raise InvalidRequest(f"tool_choice {kind!r} needs a non-empty tools list", param="tool_choice")
    if kind == "required":
        return tools, True, None
    chosen = [tool for tool in tools if tool_name(tool) == name]
    if not chosen:
        known = ", ".join(sorted(filter(None, (tool_name(tool) for tool in tools))))
        raise InvalidRequest(
            f"tool_choice names function {name!r}, which is not in tools (tools: {known})",
            param="tool_choice",
        )
    return chosen, True, name
