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


class ToolParser:
    """Splits (non-reasoning) content into plain content and tool calls."""

    def __init__(self, tools: list[dict] | None = None):
        # OpenAI-format tools ({"type": "function", "function": {name, parameters}}),
        # used to type arguments where the format carries only strings.
        self.tools = tools or []

    def feed(self, text: str) -> ParsedDelta:
        raise NotImplementedError

    def finish(self) -> ParsedDelta:
        raise NotImplementedError
