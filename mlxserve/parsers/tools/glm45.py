"""GLM-4.5 / 4.6: ``<tool_call>get_weather\\n<arg_key>city</arg_key>\\n<arg_value>Paris
</arg_value>\\n</tool_call>``; values typed by the tool's JSON schema."""

from __future__ import annotations

import json

from .arguments import coerce_value, parameter_schemas
from .markup_base import EndMarkerToolParser, ParsedCall

KEY_OPEN, KEY_CLOSE = "<arg_key>", "</arg_key>"
VALUE_OPEN, VALUE_CLOSE = "<arg_value>", "</arg_value>"


class Glm45ToolParser(EndMarkerToolParser):
    start_markers = ("<tool_call>",)
    end_marker = "</tool_call>"

    def _parse_body(self, body: str) -> list[ParsedCall] | None:
        first_key = body.find(KEY_OPEN)
        name = (body if first_key == -1 else body[:first_key]).strip()
        if not name or "<" in name or "\n" in name:
            return None
        schemas = parameter_schemas(self.tools, name)
        arguments = {}
        pos = 0 if first_key == -1 else first_key
        while first_key != -1:
            key_at = body.find(KEY_OPEN, pos)
            if key_at == -1:
                break
            key_end = body.find(KEY_CLOSE, key_at)
            value_at = body.find(VALUE_OPEN, key_end) if key_end != -1 else -1
            value_end = body.find(VALUE_CLOSE, value_at) if value_at != -1 else -1
            if value_end == -1:
                return None
            key = body[key_at + len(KEY_OPEN) : key_end].strip()
            raw = body[value_at + len(VALUE_OPEN) : value_end]
            arguments[key] = coerce_value(raw, schemas.get(key))
            pos = value_end + len(VALUE_CLOSE)
        return [ParsedCall(name, json.dumps(arguments, ensure_ascii=False))]
