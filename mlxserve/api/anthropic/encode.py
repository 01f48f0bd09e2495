"""Neutral MessageDelta stream → Anthropic's event stream, and the non-streamed message as
the fold of those very events (so both always agree, block order included).

Events: message_start, ping, content_block_start / content_block_delta (text_delta,
thinking_delta, input_json_delta) / content_block_stop, message_delta (stop_reason,
stop_sequence, usage), message_stop.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from mlxserve.serving.assembler import FINISH_TOOL_CALLS, MessageDelta, Usage


@dataclass(frozen=True)
class MessageMeta:
    id: str
    model: str
    input_tokens: int


def usage_json(usage: Usage) -> dict[str, Any]:
    """Anthropic's split of the prompt: input_tokens + cache_read_input_tokens (prefix-cache
    hits) + cache_creation_input_tokens (0: nothing is written on request) = all of it."""
    return {"input_tokens": usage.prompt_tokens - usage.cached_tokens,
            "output_tokens": usage.completion_tokens,
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": usage.cached_tokens}


def stop_fields(delta: MessageDelta) -> tuple[str, str | None]:
    """(stop_reason, stop_sequence) of the final delta."""
    if delta.finish_reason == FINISH_TOOL_CALLS:
        return "tool_use", None
    if delta.finish_reason == "length":
        return "max_tokens", None
    if isinstance(delta.stop_reason, str):
        return "stop_sequence", delta.stop_reason
    return "end_turn", None


class MessageEventEncoder:
    """One request's MessageDelta objects → Anthropic events (dicts), in order."""

    def __init__(self, meta: MessageMeta):
        self.meta = meta
        self._index = -1
        self._open: str | None = None  # type of the open content block
        self._tool_index: int | None = None  # parser index of the open tool_use block

    def start(self) -> list[dict]:
        """Sent before the request is scheduled: the prefix-cache hit is not known yet, so
        the whole prompt counts as input here; message_delta's usage has the split."""
        message = {"id": self.meta.id, "type": "message", "role": "assistant", "content": [],
                   "model": self.meta.model, "stop_reason": None, "stop_sequence": None,
                   "usage": usage_json(Usage(self.meta.input_tokens, 0))}
        return [{"type": "message_start", "message": message}, {"type": "ping"}]

    def _close(self) -> list[dict]:
        if self._open is None:
            return []
        self._open, self._tool_index = None, None
        return [{"type": "content_block_stop", "index": self._index}]

    def _begin(self, block: dict) -> list[dict]:
        events = self._close()
        self._index += 1
        self._open = block["type"]
        return events + [{"type": "content_block_start", "index": self._index,
                          "content_block": block}]

    def _delta(self, delta: dict) -> dict:
        return {"type": "content_block_delta", "index": self._index, "delta": delta}

    def _text(self, kind: str, text: str) -> list[dict]:
        events = []
        if self._open != kind:
            empty = ({"type": "thinking", "thinking": "", "signature": ""} if kind == "thinking"
                     else {"type": "text", "text": ""})
            events = self._begin(empty)
        key = "thinking" if kind == "thinking" else "text"
        return events + [self._delta({"type": f"{key}_delta", key: text})]

    def _tool_calls(self, delta: MessageDelta) -> list[dict]:
        events: list[dict] = []
        for part in delta.tool_calls:
            if part.name is not None or self._open != "tool_use" or (
                    self._tool_index != part.index):
                events += self._begin({"type": "tool_use", "id": part.id or "",
                                       "name": part.name or "", "input": {}})
                self._tool_index = part.index
            if part.arguments:
                events.append(self._delta({"type": "input_json_delta",
                                           "partial_json": part.arguments}))
        return events

    def feed(self, delta: MessageDelta) -> list[dict]:
        events = []
        if delta.reasoning:
            events += self._text("thinking", delta.reasoning)
        if delta.content:
            events += self._text("text", delta.content)
        events += self._tool_calls(delta)
        if delta.finish_reason is not None:
            events += self._finish(delta)
        return events

    def _finish(self, delta: MessageDelta) -> list[dict]:
        stop_reason, stop_sequence = stop_fields(delta)
        usage = usage_json(delta.usage or Usage(self.meta.input_tokens, 0))
        return self._close() + [
            {"type": "message_delta", "delta": {"stop_reason": stop_reason,
                                                "stop_sequence": stop_sequence},
             "usage": usage},
            {"type": "message_stop"},
        ]


def _tool_input(partial_json: str) -> dict:
    try:
        value = json.loads(partial_json) if partial_json.strip() else {}
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


class MessageBuilder:
    """Folds Anthropic events into the message they describe (the non-streamed answer)."""

    def __init__(self) -> None:
        self.message: dict[str, Any] = {}
        self._json: dict[int, str] = {}

    def apply(self, event: dict) -> None:
        kind = event["type"]
        if kind == "message_start":
            self.message = dict(event["message"], content=[])
        elif kind == "content_block_start":
            self.message["content"].append(dict(event["content_block"]))
        elif kind == "content_block_delta":
            self._apply_delta(event["index"], event["delta"])
        elif kind == "content_block_stop" and event["index"] in self._json:
            block = self.message["content"][event["index"]]
            block["input"] = _tool_input(self._json.pop(event["index"]))
        elif kind == "message_delta":
            self.message.update(event["delta"])
            self.message["usage"] = event["usage"]

    def _apply_delta(self, index: int, delta: dict) -> None:
        block = self.message["content"][index]
        if delta["type"] == "text_delta":
            block["text"] += delta["text"]
        elif delta["type"] == "thinking_delta":
            block["thinking"] += delta["thinking"]
        elif delta["type"] == "input_json_delta":
            self._json[index] = self._json.get(index, "") + delta["partial_json"]


async def collect_message(events: AsyncIterator[dict]) -> dict:
    builder = MessageBuilder()
    async for event in events:
        builder.apply(event)
    return builder.message
