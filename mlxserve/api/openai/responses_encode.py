"""Neutral MessageDelta stream → the Responses API's semantic events, each with a
sequence number. The encoder keeps the output items as it goes, so the non-streamed
response is the very object the stream's final event carries.

Items: ``reasoning`` (reasoning_text content), ``message`` (one output_text part),
``function_call``. Events: response.created, response.in_progress,
response.output_item.added/done, response.content_part.added/done,
response.output_text.delta/done, response.reasoning_text.delta/done,
response.function_call_arguments.delta/done, response.completed (response.incomplete when
max_output_tokens cut it short, response.failed on an error).
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from mlxserve.errors import MlxserveError
from mlxserve.serving.assembler import MessageDelta, Usage


@dataclass(frozen=True)
class ResponseHeader:
    id: str
    created_at: int
    model: str
    echoed: dict[str, Any] = field(default_factory=dict)  # request fields the object shows


def usage_json(usage: Usage) -> dict[str, Any]:
    return {"input_tokens": usage.prompt_tokens,
            "input_tokens_details": {"cached_tokens": usage.cached_tokens},
            "output_tokens": usage.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": usage.total_tokens}


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


class ResponseEventEncoder:
    def __init__(self, header: ResponseHeader, namespaces: dict[str, str] | None = None):
        self.header = header
        self.namespaces = namespaces or {}
        self.output: list[dict] = []
        self.final: dict | None = None  # the response object, once finished
        self._open: dict | None = None
        self._tool_index: int | None = None
        self._sequence = 0

    def response(self, status: str, usage: Usage | None = None, **extra: Any) -> dict:
        body = {"id": self.header.id, "object": "response",
                "created_at": self.header.created_at, "status": status, "error": None,
                "incomplete_details": None, "model": self.header.model,
                "output": copy.deepcopy(self.output),
                "usage": usage_json(usage) if usage is not None else None,
                **self.header.echoed}
        body.update(extra)
        return body

    def _event(self, kind: str, **body: Any) -> dict:
        event = {"type": kind, "sequence_number": self._sequence, **copy.deepcopy(body)}
        self._sequence += 1
        return event

    def start(self) -> list[dict]:
        return [self._event("response.created", response=self.response("in_progress")),
                self._event("response.in_progress", response=self.response("in_progress"))]

    def _where(self) -> dict:
        return {"item_id": self._open["id"], "output_index": len(self.output) - 1}

    def _begin(self, item: dict) -> list[dict]:
        events = self._close()
        self._open = item
        self.output.append(item)
        events.append(self._event("response.output_item.added",
                                  output_index=len(self.output) - 1, item=item))
        if item["type"] == "message":
            item["content"].append({"type": "output_text", "text": "", "annotations": [],
                                    "logprobs": []})
            events.append(self._event("response.content_part.added", **self._where(),
                                      content_index=0, part=item["content"][0]))
        return events

    def _close(self) -> list[dict]:
        item, events = self._open, []
        if item is None:
            return events
        where = self._where()
        if item["type"] == "message":
            part = item["content"][0]
            events.append(self._event("response.output_text.done", **where, content_index=0,
                                      text=part["text"], logprobs=[]))
            events.append(self._event("response.content_part.done", **where,
                                      content_index=0, part=part))
        elif item["type"] == "reasoning":
            events.append(self._event("response.reasoning_text.done", **where,
                                      content_index=0, text=item["content"][0]["text"]))
        else:
            events.append(self._event("response.function_call_arguments.done", **where,
                                      name=item["name"], arguments=item["arguments"]))
        item["status"] = "completed"
        events.append(self._event("response.output_item.done",
                                  output_index=where["output_index"], item=item))
        self._open, self._tool_index = None, None
        return events

    def _reasoning(self, text: str) -> list[dict]:
        events = []
        if self._open is None or self._open["type"] != "reasoning":
            events = self._begin({"id": _new_id("rs"), "type": "reasoning", "summary": [],
                                  "content": [{"type": "reasoning_text", "text": ""}],
                                  "status": "in_progress"})
        self._open["content"][0]["text"] += text
        return events + [self._event("response.reasoning_text.delta", **self._where(),
                                     content_index=0, delta=text)]

    def _text(self, text: str) -> list[dict]:
        events = []
        if self._open is None or self._open["type"] != "message":
            events = self._begin({"id": _new_id("msg"), "type": "message",
                                  "role": "assistant", "status": "in_progress",
                                  "content": []})
        self._open["content"][0]["text"] += text
        return events + [self._event("response.output_text.delta", **self._where(),
                                     content_index=0, delta=text, logprobs=[])]

    def _function_call(self, part: Any) -> list[dict]:
        item = {"id": _new_id("fc"), "type": "function_call", "status": "in_progress",
                "call_id": part.id or _new_id("call"), "name": part.name or "",
                "arguments": ""}
        if item["name"] in self.namespaces:
            item["namespace"] = self.namespaces[item["name"]]
        events = self._begin(item)
        self._tool_index = part.index
        return events

    def _tool_calls(self, delta: MessageDelta) -> list[dict]:
        events: list[dict] = []
        for part in delta.tool_calls:
            if part.name is not None or self._tool_index != part.index:
                events += self._function_call(part)
            if part.arguments:
                self._open["arguments"] += part.arguments
                events.append(self._event("response.function_call_arguments.delta",
                                          **self._where(), delta=part.arguments))
        return events

    def feed(self, delta: MessageDelta) -> list[dict]:
        events = []
        if delta.reasoning:
            events += self._reasoning(delta.reasoning)
        if delta.content:
            events += self._text(delta.content)
        events += self._tool_calls(delta)
        if delta.finish_reason is not None:
            events += self._finish(delta)
        return events

    def _finish(self, delta: MessageDelta) -> list[dict]:
        events = self._close()
        usage = delta.usage or Usage()
        if delta.finish_reason == "length":
            self.final = self.response("incomplete", usage,
                                       incomplete_details={"reason": "max_output_tokens"})
            return events + [self._event("response.incomplete", response=self.final)]
        self.final = self.response("completed", usage)
        return events + [self._event("response.completed", response=self.final)]

    def failed(self, error: MlxserveError) -> dict:
        self.final = self.response("failed", error={"code": error.code,
                                                    "message": error.message})
        return self._event("response.failed", response=self.final)


async def collect_response(events: AsyncIterator[dict]) -> None:
    """Run the stream to its end (the encoder's ``final`` is then the response)."""
    async for _ in events:
        pass
