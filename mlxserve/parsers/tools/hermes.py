"""Hermes / Qwen2.5 / Qwen3: ``<tool_call>\\n{"name": "f", "arguments": {...}}\\n</tool_call>``,
one block per call.

Small Qwen2.5(-Coder) models often leave the tags out and answer with the bare object,
several separated by commas or newlines, or put the call in a ```` ```json ```` fence.
Those are read as calls too, but only when every call names one of the request's tools
(so JSON answers stay content), and a bare object only where the output, or the text
right after a call, starts with it.
"""

from __future__ import annotations

from ..text_scan import skip_whitespace
from .json_calls import calls_from_json
from .markup_base import BlockOutcome, EndMarkerToolParser, ParsedCall

FENCE = "```"
FENCE_TAGS = ("", "json")
MAX_FENCE_TAG_CHARS = 16


class HermesToolParser(EndMarkerToolParser):
    start_markers = ("<tool_call>", FENCE)
    end_marker = "</tool_call>"
    openers = "{,"  # "," only counts right after a call: `{...},\n{...}`

    def _block_reset(self) -> None:
        super()._block_reset()
        self._fence_values: list[tuple[int, int]] = []  # (start, end) of each value read
        self._fence_cursor = 0
        self._fence_wants_value = True

    def _scan_block(self, marker: str, final: bool) -> BlockOutcome | None:
        if marker == "{":
            return self._scan_call_object(marker, 0, final, known_names=self.declared_names)
        if marker == ",":
            if not self._call_count:
                return self._fallback(marker)
            pos = self._skip_space_from(1)
            return self._scan_call_object(marker, pos, final, known_names=self.declared_names)
        if marker == FENCE:
            return self._scan_fence(marker, final)
        return super()._scan_block(marker, final)

    def _parse_body(self, body: str) -> list[ParsedCall] | None:
        text = body.strip()
        if not text.startswith("{"):
            return None
        return calls_from_json(text)

    # -- ```json fences ---------------------------------------------------------------------
    def _fence_body_start(self, marker: str, final: bool) -> int | None:
        """Index after the fence's ``json`` line; None to wait; -1 when not a JSON fence."""
        limit = len(marker) + MAX_FENCE_TAG_CHARS + 1
        newline = self._buffer.find("\n", len(marker), limit)
        if newline == -1:
            return None if len(self._buffer) < limit and not final else -1
        tag = self._buffer[len(marker) : newline].strip().lower()
        return newline + 1 if tag in FENCE_TAGS else -1

    def _scan_fence(self, marker: str, final: bool) -> BlockOutcome | None:
        """A fence holding call objects (a list, or objects separated by commas)."""
        if not self._fence_cursor:
            body = self._fence_body_start(marker, final)
            if body is None:
                return None
            if body == -1:
                return self._fallback(marker)
            self._fence_cursor = body
        while True:
            pos = self._fence_cursor = skip_whitespace(self._buffer, self._fence_cursor)
            if pos == len(self._buffer):
                if not final:
                    return None
                return self._fence_outcome(pos) if not self._fence_wants_value else self._fallback(marker)
            step = self._fence_step(pos, final)
            if step is None:
                return None
            if step == -1:
                return self._fallback(marker)
            if step == len(self._buffer) + 1:  # the closing fence
                return self._fence_outcome(pos + len(FENCE)) or self._fallback(marker)
            self._fence_cursor = step

    def _fence_step(self, pos: int, final: bool) -> int | None:
        """Read one value or separator at ``pos``: the next cursor, None to wait, -1 when
        this is not a fence of calls, ``len(buffer) + 1`` at the closing fence."""
        char = self._buffer[pos]
        if self._fence_wants_value:
            if char not in "{[":
                return -1
            end = self._value_end(pos, "{[")
            if end is None:
                return -1 if final else None
            if end != -1:
                self._fence_values.append((pos, end))
                self._fence_wants_value = False
            return end
        if char == ",":
            self._fence_wants_value = True
            return pos + 1
        if self._buffer.startswith(FENCE, pos):
            return len(self._buffer) + 1
        if FENCE.startswith(self._buffer[pos:]) and not final:
            return None
        return -1

    def _fence_outcome(self, length: int) -> BlockOutcome | None:
        calls: list[ParsedCall] = []
        for start, end in self._fence_values:
            found = calls_from_json(self._buffer[start:end])
            if found is None or any(call.name not in self.declared_names for call in found):
                return None
            calls.extend(found)
        return BlockOutcome(length, calls) if calls else None


class Qwen25ToolParser(HermesToolParser):
    """Qwen2.5 (and Qwen2.5-Coder) write the Hermes format."""
