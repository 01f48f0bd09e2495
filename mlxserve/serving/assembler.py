"""EngineDelta stream → neutral MessageDelta stream, and its collected form.

The assembler runs the optional OutputParser (reasoning, then tool calls) over the
detokenized text. A non-streaming answer is ``collect()`` of the very same stream, so the
two always agree.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from mlxserve.engine.request import (
    FINISH_ABORT, FINISH_ERROR, FINISH_STOP, EngineDelta, TokenLogprob,
)
from mlxserve.errors import MlxserveError
from mlxserve.parsers.base import ParsedDelta, ToolCallDelta

FINISH_TOOL_CALLS = "tool_calls"


class GenerationFailed(MlxserveError):
    """The engine ended a request with an error or aborted it."""

    status = 500
    code = "generation_failed"


class RequestAborted(GenerationFailed):
    """The server aborted the request (shutdown): 503, so a client may retry elsewhere."""

    status = 503
    code = "request_aborted"


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    prefilled_tokens: int | None = None  # a sparse (SpecPrefill) prefill's computed tokens

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class MessageDelta:
    content: str = ""
    reasoning: str = ""
    tool_calls: list[ToolCallDelta] = field(default_factory=list)
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] | None = None
    prompt_logprobs: list[TokenLogprob | None] | None = None  # on the first delta, if asked
    finish_reason: str | None = None  # stop | length | tool_calls
    stop_reason: str | int | None = None
    usage: Usage | None = None  # set on the last delta

    @property
    def has_output(self) -> bool:
        return bool(self.content or self.reasoning or self.tool_calls or self.logprobs)


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text


@dataclass
class CompletedMessage:
    content: str = ""
    reasoning: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] | None = None
    prompt_logprobs: list[TokenLogprob | None] | None = None
    finish_reason: str | None = None
    stop_reason: str | int | None = None
    usage: Usage = field(default_factory=Usage)


class OutputAssembler:
    """Turns one request's EngineDelta objects into MessageDelta objects, in order."""

    def __init__(self, output_parser: Any | None = None):
        self._parser = output_parser  # parsers.pipeline.OutputParser or None
        self._emitted_tool_call = False

    def _parse(self, text: str, final: bool) -> ParsedDelta:
        if self._parser is None:
            return ParsedDelta(content=text)
        parsed = self._parser.feed(text) if text else ParsedDelta()
        if final:
            rest = self._parser.finish()
            parsed = ParsedDelta(
                content=parsed.content + rest.content,
                reasoning=parsed.reasoning + rest.reasoning,
                tool_calls=parsed.tool_calls + rest.tool_calls,
            )
        return parsed

    def feed(self, delta: EngineDelta) -> MessageDelta:
        if delta.finish_reason == FINISH_ERROR:
            raise GenerationFailed(delta.error or "generation failed")
        if delta.finish_reason == FINISH_ABORT:
            raise RequestAborted("the request was aborted by the server")
        parsed = self._parse(delta.text, delta.finished)
        if parsed.tool_calls:
            self._emitted_tool_call = True
        out = MessageDelta(
            content=parsed.content, reasoning=parsed.reasoning, tool_calls=parsed.tool_calls,
            token_ids=list(delta.token_ids), logprobs=delta.logprobs,
            prompt_logprobs=delta.prompt_logprobs,
        )
        if delta.finished:
            out.finish_reason = delta.finish_reason
            if self._emitted_tool_call and delta.finish_reason == FINISH_STOP:
                out.finish_reason = FINISH_TOOL_CALLS
            out.stop_reason = delta.stop_reason
            out.usage = Usage(delta.prompt_tokens, delta.completion_tokens, delta.cached_tokens,
                              delta.prefilled_tokens)
        return out


def _merge_tool_call(calls: list[ToolCall], part: ToolCallDelta) -> None:
    while len(calls) <= part.index:
        calls.append(ToolCall(id="", name="", arguments=""))
    call = calls[part.index]
    call.id = part.id or call.id
    call.name = part.name or call.name
    call.arguments += part.arguments


def add_delta(message: CompletedMessage, delta: MessageDelta) -> None:
    """Fold one MessageDelta into ``message``."""
    message.content += delta.content
    message.reasoning += delta.reasoning
    message.token_ids.extend(delta.token_ids)
    for part in delta.tool_calls:
        _merge_tool_call(message.tool_calls, part)
    if delta.logprobs is not None:
        message.logprobs = (message.logprobs or []) + list(delta.logprobs)
    if delta.prompt_logprobs is not None:
        message.prompt_logprobs = delta.prompt_logprobs
    if delta.finish_reason is not None:
        message.finish_reason = delta.finish_reason
        message.stop_reason = delta.stop_reason
    if delta.usage is not None:
        message.usage = delta.usage


async def collect(stream: AsyncIterator[MessageDelta]) -> CompletedMessage:
    """The non-streaming answer: every delta of ``stream`` folded together."""
    message = CompletedMessage()
    async for delta in stream:
        add_delta(message, delta)
    return message
