"""Llama 3.1 / 3.2 / 3.3 JSON tool calls: the output is ``{"name": "f", "parameters":
{...}}`` (optionally after ``<|python_tag|>``), several separated by ``;``."""

from __future__ import annotations

from .markup_base import BlockOutcome, MarkupToolParser

PYTHON_TAG = "<|python_tag|>"


class Llama3JsonToolParser(MarkupToolParser):
    start_markers = (PYTHON_TAG,)
    openers = "{;"

    def _scan_block(self, marker: str, final: bool) -> BlockOutcome | None:
        pos = 0 if marker == "{" else self._skip_space_from(len(marker))
        if marker == ";":  # separator between calls: dropped when a call follows
            pos = self._skip_space_from(1)
            if pos == len(self._buffer):
                return BlockOutcome(pos) if final else None
            return BlockOutcome(pos) if self._buffer[pos] == "{" else self._fallback(marker)
        return self._scan_call_object(marker, pos, final)
