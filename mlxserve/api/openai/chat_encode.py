"""Neutral chat results → OpenAI chat.completion objects and chat.completion.chunk events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from mlxserve.api.openai.logprobs_encode import TokenTexts, chat_logprobs
from mlxserve.api.sse import sse_data, sse_done
from mlxserve.serving.assembler import CompletedMessage, MessageDelta, ToolCallDelta, Usage


@dataclass(frozen=True)
class ResponseMeta:
    id: str
    created: int
    model: str


def usage_json(usage: Usage) -> dict[str, Any]:
    out: dict[str, Any] = {"prompt_tokens": usage.prompt_tokens,
                           "completion_tokens": usage.completion_tokens,
                           "total_tokens": usage.total_tokens}
    details: dict[str, Any] = {}
    if usage.cached_tokens:
        details["cached_tokens"] = usage.cached_tokens
    if usage.prefilled_tokens is not None:  # SpecPrefill: the prompt tokens computed
        details["prefilled_tokens"] = usage.prefilled_tokens
    if details:
        out["prompt_tokens_details"] = details
    return out


def total_usage(usages: list[Usage], prompt_counted_once: bool = True) -> Usage:
    if not usages:
        return Usage()
    prompt = usages[0].prompt_tokens if prompt_counted_once else sum(u.prompt_tokens for u in usages)
    return Usage(prompt, sum(u.completion_tokens for u in usages),
                 max(u.cached_tokens for u in usages), prefilled_total(usages))


def prefilled_total(usages: list[Usage]) -> int | None:
    """Prompt tokens the sparse prefills computed (None: every prefill was dense)."""
    sparse = [u.prefilled_tokens for u in usages if u.prefilled_tokens is not None]
    return sum(sparse) if sparse else None


def _message_json(message: CompletedMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": "assistant", "content": message.content or None}
    if message.reasoning:
        out["reasoning_content"] = message.reasoning
    if message.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in message.tool_calls
        ]
    elif out["content"] is None:
        out["content"] = ""
    return out


def chat_response(meta: ResponseMeta, messages: list[CompletedMessage], texts: TokenTexts
                  ) -> dict[str, Any]:
    choices = [
        {"index": i, "message": _message_json(m), "logprobs": chat_logprobs(m.logprobs, texts),
         "finish_reason": m.finish_reason}
        for i, m in enumerate(messages)
    ]
    return {"id": meta.id, "object": "chat.completion", "created": meta.created,
            "model": meta.model, "choices": choices, "system_fingerprint": None,
            "usage": usage_json(total_usage([m.usage for m in messages]))}


def _tool_call_entries(calls: list[ToolCallDelta]) -> list[dict[str, Any]]:
    """One entry per call index (OpenAI's chunk shape): the pieces of a call that arrive in
    the same delta (id and name, then arguments) are joined."""
    entries: dict[int, dict[str, Any]] = {}
    for call in calls:
        entry = entries.setdefault(call.index, {"index": call.index,
                                                "function": {"arguments": ""}})
        if call.id is not None:
            entry["id"] = call.id
            entry["type"] = "function"
        if call.name is not None:
            entry["function"]["name"] = call.name
        entry["function"]["arguments"] += call.arguments
    return list(entries.values())


def _delta_json(delta: MessageDelta) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if delta.content:
        out["content"] = delta.content
    if delta.reasoning:
        out["reasoning_content"] = delta.reasoning
    if delta.tool_calls:
        out["tool_calls"] = _tool_call_entries(delta.tool_calls)
    return out


class ChatChunkEncoder:
    """Chunks of one streamed chat answer. The role chunk has no ``content``; a choice that
    ends with neither text nor a tool call gets ``content: ""`` on its last chunk, so a
    client folding the deltas gets the non-streamed message (``null`` beside tool calls,
    ``""`` for an empty answer)."""

    def __init__(self, meta: ResponseMeta, texts: TokenTexts, include_usage: bool):
        self.meta = meta
        self.texts = texts
        self.include_usage = include_usage
        self._answered: set[int] = set()  # choices that sent content or a tool call

    def chunk(self, choices: list[dict[str, Any]], usage: Usage | None = None) -> str:
        body: dict[str, Any] = {"id": self.meta.id, "object": "chat.completion.chunk",
                                "created": self.meta.created, "model": self.meta.model,
                                "system_fingerprint": None, "choices": choices}
        if self.include_usage:
            body["usage"] = usage_json(usage) if usage is not None else None
        return sse_data(body)

    def role_chunk(self, index: int) -> str:
        return self.chunk([{"index": index, "delta": {"role": "assistant"},
                            "logprobs": None, "finish_reason": None}])

    def delta_chunks(self, index: int, delta: MessageDelta) -> list[str]:
        out = []
        body = _delta_json(delta)
        if "content" in body or "tool_calls" in body:
            self._answered.add(index)
        if body or delta.logprobs:
            out.append(self.chunk([{"index": index, "delta": body,
                                    "logprobs": chat_logprobs(delta.logprobs, self.texts),
                                    "finish_reason": None}]))
        if delta.finish_reason is not None:
            last = {} if index in self._answered else {"content": ""}
            out.append(self.chunk([{"index": index, "delta": last, "logprobs": None,
                                    "finish_reason": delta.finish_reason}]))
        return out


async def chat_event_stream(encoder: ChatChunkEncoder, n: int,
                            deltas: AsyncIterator[tuple[int, MessageDelta]]
                            ) -> AsyncIterator[str]:
    for index in range(n):
        yield encoder.role_chunk(index)
    usages: list[Usage] = []
    async for index, delta in deltas:
        for chunk in encoder.delta_chunks(index, delta):
            yield chunk
        if delta.usage is not None:
            usages.append(delta.usage)
    if encoder.include_usage:
        yield encoder.chunk([], total_usage(usages))
    yield sse_done()
