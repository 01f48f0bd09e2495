"""Hermes / Qwen2.5 / Qwen3: ``<tool_call>\\n{"name": "f", "arguments": {...}}\\n</tool_call>``,
one block per call."""

from __future__ import annotations

from mlxserve.parsers.tools.json_calls import calls_from_json
from mlxserve.parsers.tools.markup_base import EndMarkerToolParser, ParsedCall


class HermesToolParser(EndMarkerToolParser):
    start_markers = ("<tool_call>",)
    end_marker = "</tool_call>"

    def _parse_body(self, body: str) -> list[ParsedCall] | None:
        text = body.strip()
        if not text.startswith("{"):
            return None
        return calls_from_json(text)


class Qwen25ToolParser(HermesToolParser):
    """Qwen2.5 (and Qwen2.5-Coder) write the Hermes format."""
