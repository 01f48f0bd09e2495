"""Qwen3-Coder: XML-ish calls, values typed by the tool's JSON schema::

    <tool_call>
    <function=get_weather>
    <parameter=city>
    Paris
    </parameter>
    </function>
    </tool_call>
"""

from __future__ import annotations

import json

from ..text_scan import find_first
from .arguments import coerce_value, parameter_schemas
from .markup_base import EndMarkerToolParser, ParsedCall

FUNCTION_OPEN = "<function="
FUNCTION_CLOSE = "</function>"
PARAMETER_OPEN = "<parameter="
PARAMETER_CLOSE = "</parameter>"


def _strip_one_newline(value: str) -> str:
    if value.startswith("\n"):
        value = value[1:]
    if value.endswith("\n"):
        value = value[:-1]
    return value


class Qwen3CoderToolParser(EndMarkerToolParser):
    # The model sometimes leaves out the outer <tool_call>: a bare function is a call too.
    start_markers = ("<tool_call>", FUNCTION_OPEN)
    end_marker = "</tool_call>"

    def _end_marker_for(self, start_marker: str) -> str:
        return FUNCTION_CLOSE if start_marker == FUNCTION_OPEN else self.end_marker

    def _parse_unterminated(self, body: str) -> list[ParsedCall] | None:
        # only a function that was closed counts: a cut-off value would be wrong
        if FUNCTION_OPEN not in body:
            return None  # a bare function cut off before its </function>
        return self._parse_body(body) if body.rstrip().endswith(FUNCTION_CLOSE) else None

    def _parse_body(self, body: str) -> list[ParsedCall] | None:
        if FUNCTION_OPEN not in body and not body.lstrip().startswith("<"):
            body = FUNCTION_OPEN + body + FUNCTION_CLOSE  # the block of a bare <function=
        calls: list[ParsedCall] = []
        pos = 0
        while True:
            at = body.find(FUNCTION_OPEN, pos)
            if at == -1:
                break
            call, pos = self._parse_function(body, at + len(FUNCTION_OPEN))
            if call is None:
                return None
            calls.append(call)
        return calls or None

    def _parse_function(self, body: str, pos: int) -> tuple[ParsedCall | None, int]:
        name_end = body.find(">", pos)
        if name_end == -1:
            return None, pos
        name = body[pos:name_end].strip()
        close = body.find(FUNCTION_CLOSE, name_end)
        section_end = close if close != -1 else len(body)
        schemas = parameter_schemas(self.tools, name)
        arguments = {}
        cursor = name_end + 1
        while True:
            at = body.find(PARAMETER_OPEN, cursor, section_end)
            if at == -1:
                break
            key_end = body.find(">", at, section_end)
            if key_end == -1:
                return None, pos
            key = body[at + len(PARAMETER_OPEN) : key_end].strip()
            # a value ends at its closing tag, or (tag forgotten) where the next one starts
            value_end, marker = find_first(body[:section_end], (PARAMETER_CLOSE, PARAMETER_OPEN), key_end + 1)
            if value_end == -1:
                value_end, marker = section_end, ""
            raw = _strip_one_newline(body[key_end + 1 : value_end])
            arguments[key] = coerce_value(raw, schemas.get(key))
            cursor = value_end + (len(marker) if marker == PARAMETER_CLOSE else 0)
        if not name:
            return None, pos
        next_pos = section_end + (len(FUNCTION_CLOSE) if close != -1 else 0)
        return ParsedCall(name, json.dumps(arguments, ensure_ascii=False)), next_pos
