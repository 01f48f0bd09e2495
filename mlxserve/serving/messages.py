"""Chat message normalization: OpenAI-shaped messages → what HF chat templates expect.

- ``developer`` becomes ``system``; all system messages move to the front, merged into one.
- Content-part arrays become plain text.
- Consecutive user (or assistant) messages merge into one.
- Assistant ``tool_calls`` carry their arguments as dicts (the HF convention); tool
  messages keep ``tool_call_id`` and gain the called function's ``name``.
"""

from __future__ import annotations

import json
from typing import Any

from mlxserve.errors import InvalidRequest

ROLES = ("system", "developer", "user", "assistant", "tool")
TEXT_PART_TYPES = ("text", "input_text", "output_text")
# Placeholders left by serving.media for a VLM's chat template; content holding them stays
# a list of parts ({"type": "text", "text": ...} | {"type": "image"} | {"type": "video"}).
MEDIA_PLACEHOLDER_TYPES = ("image", "video")


def _bad(message: str) -> InvalidRequest:
    return InvalidRequest(message, param="messages")


def content_to_text(content: Any, where: str) -> str:
    """A message's content (string, None or an array of content parts) as plain text."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _bad(f"{where}: 'content' must be a string or an array of content parts")
    texts = []
    for part in content:
        if isinstance(part, str):
            texts.append(part)
            continue
        if not isinstance(part, dict) or "type" not in part:
            raise _bad(f"{where}: each content part must be an object with a 'type'")
        if part["type"] not in TEXT_PART_TYPES:
            raise _bad(f"{where}: content parts of type '{part['type']}' are not supported "
                       "by this model")
        text = part.get("text")
        if not isinstance(text, str):
            raise _bad(f"{where}: a text content part needs a string 'text'")
        texts.append(text)
    return "\n".join(texts)


def content_to_parts(content: Any, where: str) -> str | list[dict[str, Any]]:
    """Plain text, or a list of text and media-placeholder parts when media is present."""
    if not isinstance(content, list) or not any(
            isinstance(p, dict) and p.get("type") in MEDIA_PLACEHOLDER_TYPES for p in content):
        return content_to_text(content, where)
    parts: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, dict) and part.get("type") in MEDIA_PLACEHOLDER_TYPES:
            parts.append({"type": part["type"]})
        else:
            parts.append({"type": "text", "text": content_to_text([part], where)})
    return parts


def _merged_content(first: Any, second: Any) -> Any:
    if isinstance(first, str) and isinstance(second, str):
        return "\n\n".join(t for t in (first, second) if t)

    def as_parts(content: Any) -> list[dict[str, Any]]:
        if isinstance(content, list):
            return content
        return [{"type": "text", "text": content}] if content else []

    return as_parts(first) + as_parts(second)


def _tool_call_to_template(call: Any, where: str) -> dict[str, Any]:
    if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
        raise _bad(f"{where}: each tool call needs a 'function' object")
    function = call["function"]
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise _bad(f"{where}: each tool call needs a function 'name'")
    arguments = function.get("arguments", "{}")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError:
            raise _bad(f"{where}: tool call arguments must be a JSON object string") from None
    if not isinstance(arguments, dict):
        raise _bad(f"{where}: tool call arguments must be a JSON object")
    out: dict[str, Any] = {"type": "function", "function": {"name": name, "arguments": arguments}}
    call_id = _optional_string(call, "id", where, "each tool call's 'id'")
    if call_id is not None:
        out["id"] = call_id
    return out


def _optional_string(message: dict[str, Any], key: str, where: str, what: str) -> str | None:
    value = message.get(key)
    if value is not None and not isinstance(value, str):
        raise _bad(f"{where}: {what} must be a string")
    return value


def _tool_result_fields(message: dict[str, Any], where: str, call_names: dict[str, str]
                        ) -> dict[str, Any]:
    """``tool_call_id`` and the called function's ``name`` of a tool message."""
    out: dict[str, Any] = {}
    call_id = _optional_string(message, "tool_call_id", where, "'tool_call_id'")
    if call_id is not None:
        out["tool_call_id"] = call_id
    name = _optional_string(message, "name", where, "'name'") or call_names.get(call_id or "")
    if name:
        out["name"] = name
    return out


def _convert_one(message: Any, index: int, call_names: dict[str, str]) -> dict[str, Any]:
    where = f"messages[{index}]"
    if not isinstance(message, dict):
        raise _bad(f"{where} must be an object")
    role = message.get("role")
    if role not in ROLES:
        raise _bad(f"{where}: 'role' must be one of {', '.join(ROLES)}")
    role = "system" if role == "developer" else role
    content = message.get("content")
    out: dict[str, Any] = {"role": role, "content": content_to_parts(content, where)
                           if role == "user" else content_to_text(content, where)}
    if role == "assistant" and message.get("tool_calls"):
        if not isinstance(message["tool_calls"], list):
            raise _bad(f"{where}: 'tool_calls' must be an array")
        out["tool_calls"] = [_tool_call_to_template(c, where) for c in message["tool_calls"]]
        for call in out["tool_calls"]:
            if "id" in call:
                call_names[call["id"]] = call["function"]["name"]
    if role == "tool":
        out.update(_tool_result_fields(message, where, call_names))
    reasoning = _optional_string(message, "reasoning_content", where, "'reasoning_content'")
    if role == "assistant" and reasoning:
        out["reasoning_content"] = reasoning
    return out


def _mergeable(prev: dict[str, Any], cur: dict[str, Any]) -> bool:
    if prev["role"] != cur["role"] or cur["role"] not in ("user", "assistant"):
        return False
    # An assistant turn that called tools is followed by its results, never merged into.
    return "tool_calls" not in prev


def normalize_messages(messages: Any) -> list[dict[str, Any]]:
    """Validate and normalize a chat request's messages (see the module docstring)."""
    if not isinstance(messages, list) or not messages:
        raise _bad("'messages' must be a non-empty array")
    call_names: dict[str, str] = {}
    converted = [_convert_one(m, i, call_names) for i, m in enumerate(messages)]
    system_texts = [m["content"] for m in converted if m["role"] == "system"]
    merged: list[dict[str, Any]] = []
    if system_texts:
        merged.append({"role": "system", "content": "\n\n".join(system_texts)})
    for message in converted:
        if message["role"] == "system":
            continue
        if merged and _mergeable(merged[-1], message):
            prev = merged[-1]
            prev["content"] = _merged_content(prev["content"], message["content"])
            if "tool_calls" in message:
                prev["tool_calls"] = message["tool_calls"]
            continue
        merged.append(message)
    if all(m["role"] == "system" for m in merged):
        raise _bad("'messages' needs at least one user, assistant or tool message")
    return merged
