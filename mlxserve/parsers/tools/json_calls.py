"""A parsed call, and reading ``{"name": ..., "arguments": {...}}`` call objects."""

from __future__ import annotations

import json
from typing import Any

from dataclasses import dataclass

from .arguments import arguments_json

ARGUMENT_KEYS = ("arguments", "parameters")


@dataclass(frozen=True)
class ParsedCall:
    name: str
    arguments: str  # JSON object text


def decode_json(text: str) -> tuple[bool, Any]:
    """(True, value) when ``text`` is exactly one JSON value (surrounding space allowed)."""
    try:
        return True, json.loads(text)
    except (ValueError, RecursionError):
        return False, None


def call_from_object(value: Any) -> ParsedCall | None:
    """A call from a decoded object with a string ``name`` and object arguments."""
    if not isinstance(value, dict):
        return None
    name = value.get("name")
    if not isinstance(name, str) or not name:
        function = value.get("function")
        if isinstance(function, dict):  # {"type": "function", "function": {...}}
            return call_from_object(function)
        return None
    arguments: Any = {}
    for key in ARGUMENT_KEYS:
        if key in value:
            arguments = value[key]
            break
    text = arguments_json(arguments)
    return ParsedCall(name, text) if text is not None else None


def calls_from_json(text: str) -> list[ParsedCall] | None:
    """Calls from a JSON object or a list of them; None when any element is not a call."""
    ok, value = decode_json(text)
    if not ok:
        return None
    items = value if isinstance(value, list) else [value]
    calls = [call_from_object(item) for item in items]
    if not calls or any(call is None for call in calls):
        return None
    return [call for call in calls if call is not None]
