"""Anthropic request parts → the neutral (OpenAI-shaped) chat input serving/ takes.

- ``system`` (string or text blocks) → one system message.
- user blocks: ``text``, ``image`` (base64 / url source → an image_url part, fetched by
  the same guarded media path), ``tool_result`` (→ a tool message; its images follow as a
  user message); assistant blocks: ``text``, ``thinking`` (→ reasoning_content),
  ``redacted_thinking`` (dropped), ``tool_use`` (→ tool_calls).
- ``system`` messages inside ``messages`` (Claude Code sends them, a newer beta) are text
  and join the system prompt (chat templates take one system message, first).
- A ``tool_result`` must answer a ``tool_use`` id of an earlier assistant message.
- Custom tools (name, description, input_schema) → function tools; server tools (a
  ``type`` such as ``web_search_20250305``) cannot run here and are left out, as are
  tools marked ``defer_loading`` (meant to stay hidden until a tool search finds them).
"""

from __future__ import annotations

import json
from typing import Any

from mlxserve.errors import InvalidRequest

MESSAGE_ROLES = ("user", "assistant", "system")
USER_BLOCKS = ("text", "image", "tool_result")
ASSISTANT_BLOCKS = ("text", "thinking", "redacted_thinking", "tool_use")
EFFORTS = {"low": "low", "medium": "medium", "high": "high", "max": "high", "xhigh": "high"}


def _bad(where: str, message: str, param: str = "messages") -> InvalidRequest:
    return InvalidRequest(f"{where}: {message}", param=param)


def _text_of_blocks(blocks: Any, where: str) -> str:
    if isinstance(blocks, str):
        return blocks
    if not isinstance(blocks, list):
        raise _bad(where, "must be a string or an array of text blocks")
    texts = []
    for i, block in enumerate(blocks):
        if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(
                block.get("text"), str):
            raise _bad(f"{where}.{i}", "expected a text block with a string 'text'")
        texts.append(block["text"])
    return "\n\n".join(texts)


def _image_part(block: dict, where: str) -> dict:
    source = block.get("source")
    if not isinstance(source, dict):
        raise _bad(where, "an image block needs a 'source' object")
    kind = source.get("type")
    if kind == "base64":
        media_type, data = source.get("media_type"), source.get("data")
        if not isinstance(media_type, str) or not isinstance(data, str) or not data:
            raise _bad(where, "a base64 image source needs 'media_type' and 'data' strings")
        return {"type": "image_url", "image_url": {"url": f"data:{media_type};base64,{data}"}}
    if kind == "url" and isinstance(source.get("url"), str):
        return {"type": "image_url", "image_url": {"url": source["url"]}}
    raise _bad(where, "an image source must be {'type': 'base64', 'media_type', 'data'} "
                      "or {'type': 'url', 'url'}")


def _blocks(content: Any, where: str) -> list[dict]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise _bad(where, "'content' must be a string or an array of content blocks")
    for i, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise _bad(f"{where}.{i}", "each content block must be an object with a 'type'")
    return content


def _check_block_type(block: dict, allowed: tuple[str, ...], role: str, where: str) -> None:
    if block["type"] not in allowed:
        raise _bad(where, f"content blocks of type '{block['type']}' are not accepted in "
                          f"{role} messages (accepted: {', '.join(allowed)})")


def _tool_result_messages(block: dict, known_ids: set[str], where: str) -> list[dict]:
    """The tool message of a tool_result block, and a user message with its images."""
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or call_id not in known_ids:
        raise _bad(where, f"tool_result refers to tool_use id {call_id!r}, which no earlier "
                          "assistant message has")
    content = block.get("content", "")
    texts, images = [], []
    for i, part in enumerate(_blocks(content, where) if content != "" else []):
        if part["type"] == "image":
            images.append(_image_part(part, f"{where}.content.{i}"))
        elif part["type"] == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        else:
            raise _bad(f"{where}.content.{i}", "tool_result content takes text and image "
                                              "blocks")
    text = "\n".join(texts)
    if block.get("is_error"):
        text = f"Error: {text}"
    out = [{"role": "tool", "tool_call_id": call_id, "content": text}]
    if images:
        out.append({"role": "user", "content": images})
    return out


def _user_messages(blocks: list[dict], known_ids: set[str], where: str) -> list[dict]:
    out: list[dict] = []
    parts: list[dict] = []
    for i, block in enumerate(blocks):
        here = f"{where}.content.{i}"
        _check_block_type(block, USER_BLOCKS, "user", here)
        if block["type"] == "tool_result":
            if parts:
                out.append({"role": "user", "content": parts})
                parts = []
            out.extend(_tool_result_messages(block, known_ids, here))
        elif block["type"] == "image":
            parts.append(_image_part(block, here))
        else:
            parts.append({"type": "text", "text": _text_of_blocks([block], here)})
    if parts:
        out.append({"role": "user", "content": parts})
    return out


def _tool_call(block: dict, where: str) -> dict:
    call_id, name, arguments = block.get("id"), block.get("name"), block.get("input", {})
    if not isinstance(call_id, str) or not isinstance(name, str) or not isinstance(
            arguments, dict):
        raise _bad(where, "a tool_use block needs string 'id' and 'name' and an object "
                          "'input'")
    return {"id": call_id, "type": "function",
            "function": {"name": name, "arguments": json.dumps(arguments)}}


def _assistant_message(blocks: list[dict], where: str) -> dict:
    texts, reasoning, calls = [], [], []
    for i, block in enumerate(blocks):
        here = f"{where}.content.{i}"
        _check_block_type(block, ASSISTANT_BLOCKS, "assistant", here)
        if block["type"] == "text":
            texts.append(_text_of_blocks([block], here))
        elif block["type"] == "thinking" and isinstance(block.get("thinking"), str):
            reasoning.append(block["thinking"])
        elif block["type"] == "tool_use":
            calls.append(_tool_call(block, here))
    message: dict[str, Any] = {"role": "assistant", "content": "\n\n".join(texts)}
    if calls:
        message["tool_calls"] = calls
    if reasoning:
        message["reasoning_content"] = "\n\n".join(reasoning)
    return message


def anthropic_messages(system: Any, messages: list[Any]) -> list[dict]:
    """Anthropic ``system`` + ``messages`` → OpenAI-shaped chat messages."""
    if not messages:
        raise InvalidRequest("messages: must be a non-empty array", param="messages")
    out: list[dict] = []
    if system:
        out.append({"role": "system", "content": _text_of_blocks(system, "system")})
    known_ids: set[str] = set()
    for i, message in enumerate(messages):
        where = f"messages.{i}"
        if not isinstance(message, dict) or message.get("role") not in MESSAGE_ROLES:
            raise _bad(where, "each message needs a 'role' of 'user', 'assistant' or 'system'")
        if message["role"] == "system":
            text = _text_of_blocks(message.get("content"), where)
            out.extend([{"role": "system", "content": text}] if text else [])
            continue
        blocks = _blocks(message.get("content"), where)
        if message["role"] == "user":
            out.extend(_user_messages(blocks, known_ids, where))
            continue
        assistant = _assistant_message(blocks, where)
        known_ids.update(c["id"] for c in assistant.get("tool_calls", []))
        out.append(assistant)
    return out


def anthropic_tools(tools: list[Any] | None) -> list[dict] | None:
    """Custom tools as function tools; server tools (typed, no input_schema) are dropped."""
    if tools is None:
        return None
    out = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise _bad(f"tools.{i}", "each tool must be an object", "tools")
        if tool.get("type") not in (None, "custom") or tool.get("defer_loading"):
            continue  # a server tool (web search, ...) cannot run here; a deferred one waits
        name, schema = tool.get("name"), tool.get("input_schema")
        if not isinstance(name, str) or not name or not isinstance(schema, dict):
            raise _bad(f"tools.{i}", "a tool needs a 'name' and an 'input_schema' object",
                       "tools")
        function = {"name": name, "parameters": schema}
        if isinstance(tool.get("description"), str):
            function["description"] = tool["description"]
        out.append({"type": "function", "function": function})
    return out


def anthropic_tool_choice(choice: dict[str, Any] | None) -> str | dict | None:
    """auto (the default: calls are parsed when the server parses them), any, tool, none."""
    if choice is None:
        return None
    kind = choice.get("type")
    if kind == "auto":
        return None
    if kind == "any":
        return "required"
    if kind == "none":
        return "none"
    if kind == "tool" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise InvalidRequest("tool_choice: 'type' must be auto, any, none, or tool with a "
                         "'name'", param="tool_choice")


def reasoning_switches(thinking: dict[str, Any] | None, output_config: dict[str, Any] | None
                       ) -> tuple[bool | None, str | None]:
    """(enable_thinking, reasoning_effort) from ``thinking`` and ``output_config.effort``."""
    kind = (thinking or {}).get("type")
    if kind not in (None, "enabled", "disabled", "adaptive"):
        raise InvalidRequest("thinking: 'type' must be enabled, disabled or adaptive",
                             param="thinking")
    enabled = {"enabled": True, "disabled": False}.get(kind)
    effort = (output_config or {}).get("effort")
    if effort is not None and effort not in EFFORTS:
        raise InvalidRequest(f"output_config.effort must be one of {', '.join(EFFORTS)}",
                             param="output_config")
    return enabled, EFFORTS.get(effort) if effort else None


MIN_THINKING_BUDGET = 1024  # Anthropic's floor for thinking.budget_tokens


def thinking_budget(thinking: dict[str, Any] | None, max_tokens: int | None) -> int | None:
    """``thinking.budget_tokens`` of an ``enabled`` thinking block, checked as Anthropic
    checks it: an integer, at least 1024, below ``max_tokens`` (when the route has one)."""
    if (thinking or {}).get("type") != "enabled":
        return None
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int) or isinstance(budget, bool):
        raise InvalidRequest("thinking.budget_tokens: an integer is required when thinking "
                             "is enabled", param="thinking")
    if budget < MIN_THINKING_BUDGET:
        raise InvalidRequest(f"thinking.budget_tokens: must be at least "
                             f"{MIN_THINKING_BUDGET}", param="thinking")
    if max_tokens is not None and budget >= max_tokens:
        raise InvalidRequest("max_tokens must be greater than thinking.budget_tokens",
                             param="max_tokens")
    return budget
