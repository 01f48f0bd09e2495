"""Hermes / Qwen2.5 / Qwen3: ``<tool_call>\\n{"name": "f", "arguments": {...}}\\n</tool_call>``,
one block per call.

Small Qwen2.5(-Coder) models often leave the tags out and answer with the bare object.
That is read as a call too, but only where the output (or the text after a call) starts
with it and only when it names one of the request's tools, so JSON answers stay content.
"""

from __future__ import annotations

from .arguments import tool_name
from .json_calls import calls_from_json
from .markup_base import BlockOutcome, EndMarkerToolParser, ParsedCall


class HermesToolParser(EndMarkerToolParser):
    start_markers = ("<tool_call>",)
    end_marker = "</tool_call>"
    openers = "{"

    def _scan_block(self, marker: str, final: bool) -> BlockOutcome | None:
        if marker == "{":
            names = {name for name in map(tool_name, self.tools) if name}
            return self._scan_call_object(marker, 0, final, known_names=names)
        return super()._scan_block(marker, final)

    def _parse_body(self, body: str) -> list[ParsedCall] | None:
        text = body.strip()
        if not text.startswith("{"):
            return None
        return calls_from_json(text)


class Qwen25ToolParser(HermesToolParser):
    """Qwen2.5 (and Qwen2.5-Coder) write the Hermes format."""
