"""Bounds on everything a client controls, in one place.

Each check raises ``LimitExceeded`` (a 400) whose message names the limit and the server
option that sets it. These are sizes and counts only; the shape of messages and tools is
checked where they are read (serving.messages, parser_setup). ``RequestLimits`` defaults
are the server's defaults (the CLI builds one from its options).

Protocol-neutral: OpenAI and Anthropic requests both arrive here as ``ChatInput`` /
``CompletionInput``; the HTTP-level bounds (JSON depth, header bytes) are read by
api.guards from the same record.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields
from typing import Any

from mlxserve.errors import InvalidRequest
from mlxserve.serving.chat_input import ChatInput, GenerationOptions


@dataclass(frozen=True)
class RequestLimits:
    max_messages: int = 2048  # messages in one chat request
    max_content_parts: int = 2048  # content parts over all messages of a request
    max_tools: int = 128
    max_tool_schema_bytes: int = 65536  # one tool definition, as compact JSON
    max_json_depth: int = 64  # nesting of arrays/objects in a request body
    max_stop_strings: int = 16
    max_stop_string_chars: int = 512  # one stop string
    max_logit_bias: int = 1024  # entries of logit_bias
    max_total_tokens: int = 262144  # n (x prompts) x max_tokens of one request
    max_header_bytes: int = 16384  # names and values of all request headers


def limit_option(name: str) -> str:
    """The command-line option of a RequestLimits field."""
    return "--" + name.replace("_", "-")


LIMIT_NAMES = tuple(f.name for f in fields(RequestLimits))


class LimitExceeded(InvalidRequest):
    code = "limit_exceeded"


def exceeded(what: str, count: int, limit_name: str, limit: int,
             param: str | None) -> LimitExceeded:
    return LimitExceeded(f"{what} is {count}; this server accepts at most {limit} "
                         f"({limit_option(limit_name)})", param=param)


def _bounded(what: str, count: int, limit_name: str, limits: RequestLimits,
             param: str | None) -> None:
    limit = getattr(limits, limit_name)
    if count > limit:
        raise exceeded(what, count, limit_name, limit, param)


def _as_list(value: Any) -> list[Any]:
    """A list field as sent; other shapes count as empty (their readers refuse them)."""
    return value if isinstance(value, list) else []


def _content_parts(messages: list[Any]) -> int:
    return sum(len(m["content"]) for m in messages
               if isinstance(m, dict) and isinstance(m.get("content"), list))


def _tool_size(tool: Any) -> int:
    try:
        return len(json.dumps(tool, separators=(",", ":"), ensure_ascii=False))
    except (TypeError, ValueError):
        return 0  # not JSON-shaped: parser_setup reports the shape


def check_chat_limits(chat: ChatInput, limits: RequestLimits) -> None:
    messages, tools = _as_list(chat.messages), _as_list(chat.tools)
    _bounded("the number of messages", len(messages), "max_messages", limits, "messages")
    _bounded("the number of content parts", _content_parts(messages), "max_content_parts",
             limits, "messages")
    _bounded("the number of tools", len(tools), "max_tools", limits, "tools")
    for i, tool in enumerate(tools):
        _bounded(f"the size of tools[{i}] in bytes", _tool_size(tool),
                 "max_tool_schema_bytes", limits, f"tools[{i}]")
    check_option_limits(chat.options, limits)


def check_option_limits(options: GenerationOptions, limits: RequestLimits) -> None:
    stops = options.stop if isinstance(options.stop, (list, tuple)) else ()
    _bounded("the number of stop strings", len(stops), "max_stop_strings", limits, "stop")
    longest = max((len(s) for s in stops if isinstance(s, str)), default=0)
    _bounded("the length of a stop string", longest, "max_stop_string_chars", limits, "stop")
    bias = options.logit_bias if isinstance(options.logit_bias, dict) else {}
    _bounded("the number of logit_bias entries", len(bias), "max_logit_bias", limits,
             "logit_bias")


def check_total_tokens(choices: int, max_tokens: int, limits: RequestLimits) -> None:
    """``choices`` engine requests of up to ``max_tokens`` each (n, times prompts)."""
    _bounded(f"n x max_tokens ({choices} x {max_tokens})", choices * max_tokens,
             "max_total_tokens", limits, "max_tokens")


# A JSON string literal (escapes included); what is left outside them is structure.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def json_depth(body: bytes) -> int:
    """The deepest nesting of arrays and objects in a JSON text (0 for a scalar).

    Works on the raw bytes (strings removed, then brackets counted), so it is safe before
    any parser recursion happens; malformed JSON gets some number, the parser then says
    what is wrong with it.
    """
    brackets = _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    depth = deepest = 0
    for byte in brackets:
        depth += 1 if byte in b"[{" else -1
        deepest = max(deepest, depth)
    return deepest
