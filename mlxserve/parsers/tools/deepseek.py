"""DeepSeek V3 / R1 and V3.1 tool calls (full-width bars, ``▁`` for spaces)::

    <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather
    ```json
    {"city": "Paris"}
    ```<｜tool▁call▁end｜><｜tool▁calls▁end｜>

V3.1 drops the type and the fence: ``<｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{...}
<｜tool▁call▁end｜>``. The outer begin/end markers are dropped; each call is a block.
"""

from __future__ import annotations

from ..text_scan import strip_code_fence
from .arguments import arguments_json
from .markup_base import EndMarkerToolParser, ParsedCall

CALLS_BEGIN = "<｜tool▁calls▁begin｜>"
CALLS_END = "<｜tool▁calls▁end｜>"
CALL_BEGIN = "<｜tool▁call▁begin｜>"
CALL_END = "<｜tool▁call▁end｜>"
SEPARATOR = "<｜tool▁sep｜>"


class DeepSeekV3ToolParser(EndMarkerToolParser):
    start_markers = (CALL_BEGIN,)
    silent_markers = (CALLS_BEGIN, CALLS_END)
    end_marker = CALL_END

    def _parse_body(self, body: str) -> list[ParsedCall] | None:
        at = body.find(SEPARATOR)
        if at == -1:
            return None
        head, rest = body[:at].strip(), body[at + len(SEPARATOR) :]
        if head == "function":  # V3 / R1: name on the first line, fenced JSON after
            newline = rest.find("\n")
            if newline == -1:
                return None
            name, arguments = rest[:newline].strip(), strip_code_fence(rest[newline + 1 :])
        else:  # V3.1
            name, arguments = head, strip_code_fence(rest)
        if not name:
            return None
        text = arguments_json(arguments or "{}")
        return [ParsedCall(name, text)] if text is not None else None

    def _parse_unterminated(self, body: str) -> list[ParsedCall] | None:
        trimmed = body.rstrip()
        if trimmed.endswith(CALLS_END):
            trimmed = trimmed[: -len(CALLS_END)]
        return self._parse_body(trimmed)
