"""A bounded in-memory store of responses for previous_response_id, GET/DELETE and
GET .../input_items, evicted least recently used first. ``store: false`` responses are
never put here."""

from __future__ import annotations

import uuid
from collections import OrderedDict
from dataclasses import dataclass

ID_PREFIXES = {"message": "msg", "function_call": "fc", "function_call_output": "fco",
               "reasoning": "rs"}
TEXT_PART = {"assistant": "output_text"}  # other roles' string content: input_text


@dataclass(frozen=True)
class StoredResponse:
    response: dict  # the response object, as GET returns it
    items: list[dict]  # the conversation: every input item, then the output items
    input_count: int = 0  # how many of ``items`` were the response's input


def listed_item(item: dict) -> dict:
    """An input item as GET .../input_items lists it: an ``id`` (made once, when stored),
    a message's string content as one text part."""
    kind = item.get("type") or "message"
    listed = {"id": f"{ID_PREFIXES.get(kind, 'item')}_{uuid.uuid4().hex}", **item, "type": kind}
    if kind == "message" and isinstance(item.get("content"), str):
        part = TEXT_PART.get(item.get("role"), "input_text")
        listed["content"] = [{"type": part, "text": item["content"]}]
    if kind in ("message", "function_call", "function_call_output"):
        listed.setdefault("status", "completed")
    return listed


class ResponseStore:
    def __init__(self, max_entries: int):
        self.max_entries = max_entries
        self._entries: OrderedDict[str, StoredResponse] = OrderedDict()

    def put(self, response_id: str, stored: StoredResponse) -> None:
        self._entries[response_id] = stored
        self._entries.move_to_end(response_id)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def get(self, response_id: str) -> StoredResponse | None:
        stored = self._entries.get(response_id)
        if stored is not None:
            self._entries.move_to_end(response_id)
        return stored

    def delete(self, response_id: str) -> bool:
        return self._entries.pop(response_id, None) is not None
