"""Mistral: ``[TOOL_CALLS][{"name": "f", "arguments": {...}}, ...]`` (v3 tokenizers), or
``[TOOL_CALLS]f[ARGS]{...}`` with one marker per call (v11+, optionally
``f[CALL_ID]abc123def[ARGS]{...}``)."""

from __future__ import annotations

from .arguments import arguments_json
from .json_calls import calls_from_json
from .markup_base import BlockOutcome, MarkupToolParser, ParsedCall

TOOL_CALLS = "[TOOL_CALLS]"
ARGS = "[ARGS]"
CALL_ID = "[CALL_ID]"
MAX_NAME_LENGTH = 256


class MistralToolParser(MarkupToolParser):
    start_markers = (TOOL_CALLS,)

    def _scan_block(self, marker: str, final: bool) -> BlockOutcome | None:
        pos = self._skip_space_from(len(marker))
        if pos == len(self._buffer):
            return self._fallback(marker) if final else None
        if self._buffer[pos] == "[":
            return self._scan_list(marker, pos, final)
        return self._scan_named(marker, pos, final)

    def _scan_list(self, marker: str, pos: int, final: bool) -> BlockOutcome | None:
        end = self._value_end(pos, "[")
        if end is None:
            return self._fallback(marker) if final else None
        calls = calls_from_json(self._buffer[pos:end]) if end != -1 else None
        return BlockOutcome(end, calls) if calls else self._fallback(marker)

    def _scan_named(self, marker: str, pos: int, final: bool) -> BlockOutcome | None:
        args_at = self._buffer.find(ARGS, pos, pos + MAX_NAME_LENGTH + len(ARGS))
        if args_at == -1:
            waiting = len(self._buffer) - pos < MAX_NAME_LENGTH + len(ARGS)
            return None if waiting and not final else self._fallback(marker)
        name = self._buffer[pos:args_at]
        id_at = name.find(CALL_ID)
        if id_at != -1:
            name = name[:id_at]
        name = name.strip()
        if not name or any(char.isspace() or char in "[]{}\"" for char in name):
            return self._fallback(marker)
        start = args_at + len(ARGS)
        end = self._value_end(start, "{")
        if end is None:
            return self._fallback(marker) if final else None
        text = arguments_json(self._buffer[start:end]) if end != -1 else None
        if text is None:
            return self._fallback(marker)
        return BlockOutcome(end, [ParsedCall(name, text)])
