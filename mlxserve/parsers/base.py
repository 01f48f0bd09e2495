"""The streaming contract every parser follows. Pure Python: no MLX, no package imports
beyond errors.

A parser is created per request (it keeps state across chunks). ``feed(text)`` takes the
next piece of model output and returns what can be emitted *now*; text that might still
turn out to be markup is held back until it is decided. ``finish()`` flushes everything
held back (unterminated markup falls back to plain content, never an exception).
For any split of the same output into chunks, the concatenation of all returned deltas
is the same (streaming == non-streaming).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ToolCallDelta:
    index: int  # position of the call in this response (parallel calls: 0, 1, ...)
    id: str | None = None  # set on the first delta of a call
    name: str | None = None  # set on the first delta of a call
    arguments: str = ""  # the next fragment of the JSON arguments string


@dataclass
class ParsedDelta:
    content: str = ""
    reasoning: str = ""
    tool_calls: list[ToolCallDelta] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.content or self.reasoning or self.tool_calls)


class ReasoningParser:
    """Splits model output into reasoning and content."""

    def __init__(self, *, prompt_opens_reasoning: bool = False):
        # True when the chat template already wrote the opening tag (e.g. "<think>\n")
        # at the end of the prompt, so the output starts inside the reasoning.
        self.prompt_opens_reasoning = prompt_opens_reasoning

    def feed(self, text: str) -> ParsedDelta:
        raise NotImplementedError

    def finish(self) -> ParsedDelta:
        raise NotImplementedError


MAX_CALL_NAME_CHARS = 128
NAME_PUNCTUATION = "_-.:"


def is_plausible_call_name(name: str) -> bool:
    """A function name a model could mean: a letter or ``_`` first, then letters, digits
    and ``_-.:`` (namespaced names), at most 128 characters."""
    if not name or len(name) > MAX_CALL_NAME_CHARS or not (name[0].isalpha() or name[0] == "_"):
        return False
    return all(char.isalnum() or char in NAME_PUNCTUATION for char in name)


def tool_name(tool: dict) -> str | None:
    """Name of an OpenAI (``{"function": {"name"}}``) or plain (``{"name"}``) tool."""
    if not isinstance(tool, dict):
        return None
    function = tool.get("function", tool)
    name = function.get("name") if isinstance(function, dict) else None
    return name if isinstance(name, str) else None


def declared_tool_names(tools: list[dict]) -> frozenset[str]:
    return frozenset(name for name in map(tool_name, tools) if name)


class ToolParser:
    """Splits (non-reasoning) content into plain content and tool calls.

    A call counts only when ``accepts_call_name`` says so: with tools declared, its name
    must be one of them; without, a plausible identifier. Any other call markup is content.
    """

    def __init__(self, tools: list[dict] | None = None):
        # OpenAI-format tools ({"type": "function", "function": {name, parameters}}),
        # used to type arguments where the format carries only strings.
        self.tools = tools or []
        self.declared_names = declared_tool_names(self.tools)

    def accepts_call_name(self, name: str) -> bool:
        if self.declared_names:
            return name in self.declared_names
        return is_plausible_call_name(name)

    def feed(self, text: str) -> ParsedDelta:
        raise NotImplementedError

    def finish(self) -> ParsedDelta:
        raise NotImplementedError
