"""Typing string-valued arguments by the tool's JSON schema (for XML-ish formats such as
qwen3_coder and glm45, where every value arrives as text)."""

from __future__ import annotations

import json
from typing import Any

from ..base import tool_name


def parameter_schemas(tools: list[dict], name: str) -> dict[str, dict]:
    """The ``properties`` of the named tool's parameters ({} when unknown)."""
    for tool in tools:
        if tool_name(tool) != name:
            continue
        function = tool.get("function", tool)
        parameters = function.get("parameters") or function.get("input_schema") or {}
        properties = parameters.get("properties") if isinstance(parameters, dict) else None
        return properties if isinstance(properties, dict) else {}
    return {}


def _schema_types(schema: dict | None) -> list[str]:
    if not isinstance(schema, dict):
        return []
    declared = schema.get("type")
    if isinstance(declared, str):
        return [declared]
    if isinstance(declared, list):
        return [t for t in declared if isinstance(t, str)]
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list):
            return [t for option in options for t in _schema_types(option)]
    if "enum" in schema:
        return ["string"] if all(isinstance(v, str) for v in schema["enum"]) else []
    return []


def _try_json(raw: str) -> tuple[bool, Any]:
    try:
        return True, json.loads(raw)
    except (ValueError, RecursionError):
        return False, None


def coerce_value(raw: str, schema: dict | None) -> Any:
    """``raw`` typed by ``schema``; text that does not fit the declared type stays a string.

    Without a schema, JSON literals (numbers, booleans, objects, ...) are decoded and
    anything else is a string.
    """
    types = _schema_types(schema)
    if types == ["string"] or (types and "string" in types and not _try_json(raw)[0]):
        return raw
    text = raw.strip()
    for declared in types or ["any"]:
        value = _typed(text, declared)
        if value is not _NO_VALUE:
            return value
    return raw


_NO_VALUE = object()


def _typed(text: str, declared: str) -> Any:
    lowered = text.lower()
    if declared == "boolean":
        return {"true": True, "false": False}.get(lowered, _NO_VALUE)
    if declared == "null":
        return None if lowered in ("null", "none") else _NO_VALUE
    if declared in ("integer", "number"):
        ok, value = _try_json(text)
        if ok and isinstance(value, (int, float)) and not isinstance(value, bool):
            if declared == "integer" and isinstance(value, float) and value.is_integer():
                return int(value)
            return value
        return _NO_VALUE
    ok, value = _try_json(text)
    if not ok:
        return _NO_VALUE
    if declared == "object" and not isinstance(value, dict):
        return _NO_VALUE
    if declared == "array" and not isinstance(value, list):
        return _NO_VALUE
    if declared == "string":
        return value if isinstance(value, str) else _NO_VALUE
    return value


def arguments_json(arguments: Any) -> str | None:
    """The OpenAI ``arguments`` string for a decoded arguments value (an object, or a JSON
    string holding one); None when it is not an object."""
    if isinstance(arguments, str):
        ok, arguments = _try_json(arguments)
        if not ok:
            return None
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        return None
    return json.dumps(arguments, ensure_ascii=False)
