"""Llama 3.1 / 3.2 / 3.3 JSON tool calls: the output is ``{"name": "f", "parameters":
{...}}`` (optionally after ``<|python_tag|>``), several separated by ``;``."""

from __future__ import annotations

from mlxserve.parsers.text_scan import skip_whitespace
from mlxserve.parsers.tools.json_calls import decode_json, call_from_object
from mlxserve.parsers.tools.markup_base import BlockOutcome, MarkupToolParser

PYTHON_TAG = "<|python_tag|>"


class Llama3JsonToolParser(MarkupToolParser):
    start_markers = (PYTHON_TAG,)
    openers = "{;"

    def _scan_block(self, marker: str, final: bool) -> BlockOutcome | None:
        pos = 0 if marker == "{" else skip_whitespace(self._buffer, len(marker))
        if marker == ";":  # separator between calls: dropped when a call follows
            pos = skip_whitespace(self._buffer, 1)
            if pos == len(self._buffer):
                return BlockOutcome(pos) if final else None
            return BlockOutcome(pos) if self._buffer[pos] == "{" else self._fallback(marker)
        if pos == len(self._buffer):
            return self._fallback(marker) if final else None
        starts = self._starts_object(pos, final)
        if starts is None:
            return None
        if not starts:
            return self._fallback(marker)
        end = self._value_end(pos, "{")
        if end is None:
            return self._fallback(marker) if final else None
        ok, value = decode_json(self._buffer[pos:end]) if end != -1 else (False, None)
        call = call_from_object(value) if ok else None
        return BlockOutcome(end, [call]) if call else self._fallback(marker)

    def _starts_object(self, pos: int, final: bool) -> bool | None:
        """True when the text at ``pos`` can open a call object (``{`` then ``"``); None while
        undecided."""
        if self._buffer[pos] != "{":
            return False
        key = skip_whitespace(self._buffer, pos + 1)
        if key == len(self._buffer):
            return False if final else None
        return self._buffer[key] == '"'
