"""Responses API input → the neutral (chat-shaped) input serving/ takes.

Items: ``message`` (roles user, system, developer, assistant; content a string or
``input_text`` / ``output_text`` / ``input_image`` parts), ``function_call``,
``function_call_output`` (must answer an earlier call's ``call_id``), ``reasoning``
(earlier output; dropped, its encrypted content means nothing here). Tools: ``function``
tools, and ``namespace`` groups flattened into their function tools; hosted tools
(web_search, file_search, ...) cannot run here and are left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlxserve.errors import InvalidRequest

MESSAGE_ROLES = ("user", "system", "developer", "assistant")
OUTPUT_TEXT_TYPES = ("input_text", "output_text", "text")


def _bad(where: str, message: str, param: str = "input") -> InvalidRequest:
    return InvalidRequest(f"{where}: {message}", param=param)


def input_items(value: Any) -> list[dict]:
    """``input`` as a list of items (a string is one user message)."""
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    if not isinstance(value, list):
        raise InvalidRequest("'input' must be a string or an array of items", param="input")
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise _bad(f"input[{i}]", "each item must be an object")
    return value


def _message(item: dict, where: str) -> dict:
    role = item.get("role")
    if role not in MESSAGE_ROLES:
        raise _bad(where, f"'role' must be one of {', '.join(MESSAGE_ROLES)}")
    content = item.get("content")
    if not isinstance(content, (str, list)):
        raise _bad(where, "'content' must be a string or an array of content parts")
    return {"role": role, "content": content}


def _output_text(output: Any, where: str) -> str:
    if isinstance(output, str):
        return output
    if isinstance(output, list) and all(
            isinstance(p, dict) and p.get("type") in OUTPUT_TEXT_TYPES
            and isinstance(p.get("text"), str) for p in output):
        return "\n".join(p["text"] for p in output)
    raise _bad(where, "'output' must be a string or an array of input_text parts")


def _function_call(item: dict, where: str) -> dict:
    call_id, name, arguments = item.get("call_id"), item.get("name"), item.get("arguments")
    if not all(isinstance(v, str) for v in (call_id, name, arguments)):
        raise _bad(where, "a function_call needs string 'call_id', 'name' and 'arguments'")
    return {"id": call_id, "type": "function",
            "function": {"name": name, "arguments": arguments}}


def _add_call(messages: list[dict], call: dict) -> None:
    """Consecutive function calls are one assistant turn (parallel calls)."""
    last = messages[-1] if messages else None
    if last is not None and last["role"] == "assistant" and "tool_calls" in last:
        last["tool_calls"].append(call)
    else:
        messages.append({"role": "assistant", "content": "", "tool_calls": [call]})


def items_to_messages(items: list[dict]) -> list[dict]:
    """Chat-shaped messages of ``items``, in order."""
    messages: list[dict] = []
    call_ids: set[str] = set()
    for i, item in enumerate(items):
        where = f"input[{i}]"
        kind = item.get("type", "message")
        if kind == "message":
            messages.append(_message(item, where))
        elif kind == "function_call":
            call = _function_call(item, where)
            call_ids.add(call["id"])
            _add_call(messages, call)
        elif kind == "function_call_output":
            call_id = item.get("call_id")
            if call_id not in call_ids:
                raise _bad(where, f"no function_call with call_id {call_id!r} comes before "
                                  "this function_call_output")
            messages.append({"role": "tool", "tool_call_id": call_id,
                             "content": _output_text(item.get("output"), where)})
        elif kind != "reasoning":
            raise _bad(where, f"input items of type '{kind}' are not supported (accepted: "
                              "message, function_call, function_call_output, reasoning)")
    return messages


@dataclass
class ResponseTools:
    tools: list[dict] | None = None  # chat-shaped function tools
    namespaces: dict[str, str] = field(default_factory=dict)  # function name → namespace


def _function_tool(tool: dict, where: str) -> dict:
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise _bad(where, "a function tool needs a 'name'", "tools")
    function: dict[str, Any] = {"name": name,
                                "parameters": tool.get("parameters") or {"type": "object"}}
    if isinstance(tool.get("description"), str):
        function["description"] = tool["description"]
    return {"type": "function", "function": function}


def response_tools(tools: list[Any] | None) -> ResponseTools:
    """Function tools, namespace groups flattened; hosted tools left out."""
    if tools is None:
        return ResponseTools()
    out = ResponseTools(tools=[])
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise _bad(where, "each tool must be an object", "tools")
        if tool.get("type") == "function":
            out.tools.append(_function_tool(tool, where))
        elif tool.get("type") == "namespace":
            for j, inner in enumerate(tool.get("tools") or []):
                if isinstance(inner, dict) and inner.get("type") == "function":
                    out.tools.append(_function_tool(inner, f"{where}.tools[{j}]"))
                    out.namespaces[inner["name"]] = str(tool.get("name") or "")
    return out


def response_tool_choice(choice: Any) -> str | dict | None:
    """auto (the default: calls are parsed when the server parses them), none, required,
    or {"type": "function", "name": ...}."""
    if choice is None or choice == "auto":
        return None
    if choice in ("none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(
            choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise InvalidRequest("tool_choice must be auto, none, required or {'type': 'function', "
                         "'name': ...}", param="tool_choice")
