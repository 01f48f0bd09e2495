"""Folding parser deltas into one result (a non-streaming response, or a test's check
that streamed and non-streamed output agree)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .base import ParsedDelta


@dataclass
class MergedToolCall:
    id: str
    name: str
    arguments: str


@dataclass
class MergedOutput:
    content: str = ""
    reasoning: str = ""
    tool_calls: list[MergedToolCall] = field(default_factory=list)


def merge_deltas(deltas: Iterable[ParsedDelta]) -> MergedOutput:
    merged = MergedOutput()
    by_index: dict[int, MergedToolCall] = {}
    for delta in deltas:
        merged.content += delta.content
        merged.reasoning += delta.reasoning
        for piece in delta.tool_calls:
            call = by_index.get(piece.index)
            if call is None:
                call = by_index[piece.index] = MergedToolCall(piece.id or "", piece.name or "", "")
                merged.tool_calls.append(call)
            call.arguments += piece.arguments
    return merged


def parse_chunks(parser, chunks: Iterable[str]) -> MergedOutput:
    """Feed ``chunks`` to a parser (anything with ``feed``/``finish``), then finish, and
    fold the deltas."""
    deltas = [parser.feed(chunk) for chunk in chunks]
    deltas.append(parser.finish())
    return merge_deltas(deltas)
