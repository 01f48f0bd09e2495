"""The streaming skeleton shared by tool parsers whose calls are blocks of markup.

Outside a block, text is content, except a tail that could be the start of a start marker
(held back until decided). Inside a block the subclass decides, from the buffered text,
when the block is over and what it holds. A whole block is emitted at once: a delta with
the call's index, id and name, then one with its arguments. A block that does not parse
becomes content (markup falls back to text, never an exception), and so does a block
whose calls name a function the parser does not accept (``ToolParser.accepts_call_name``).

Whitespace between and after calls is dropped; other text between calls stays content.
Formats without a start token (a bare JSON object or Python list) name ``openers``:
characters that open a block when they are the first non-space text of the output, or
right after a call or a dropped wrapper marker.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..base import ParsedDelta, ToolCallDelta, ToolParser
from ..text_scan import BracketExtent, find_first, new_call_id, partial_marker_len, skip_whitespace
from .json_calls import ParsedCall, call_from_object, decode_json

FEED_PIECE_CHARS = 4096


@dataclass
class BlockOutcome:
    length: int  # characters of the buffer the block took
    calls: list[ParsedCall] = field(default_factory=list)
    content: str = ""  # text of the block that is plain content, emitted before the calls


class MarkupToolParser(ToolParser):
    start_markers: tuple[str, ...] = ()
    # Markers dropped where they stand outside a block (wrappers around a list of calls).
    silent_markers: tuple[str, ...] = ()
    # Characters that open a block where no text came yet (see the module docstring).
    openers: str = ""

    def __init__(self, tools: list[dict] | None = None):
        super().__init__(tools)
        self._buffer = ""
        self._block_marker: str | None = None  # set while inside a block
        self._call_count = 0
        self._opener_armed = True  # no text since the start, a call or a wrapper marker
        self._extent: BracketExtent | None = None
        self._extent_start = 0
        self._extent_fed = 0
        self._after_call = False  # whitespace right after a call is held, maybe dropped
        # How far the buffer is known to hold no marker / only whitespace (so a long run of
        # held whitespace is scanned once, not once per chunk); reset when it is consumed.
        self._outside_searched = 0
        self._blank = 0

    # -- subclass hooks -------------------------------------------------------------------
    def _scan_block(self, marker: str, final: bool) -> BlockOutcome | None:
        """Decide the block at the start of ``self._buffer`` (it begins with ``marker``).

        Return None to wait for more text (never when ``final``).
        """
        raise NotImplementedError

    # -- streaming ------------------------------------------------------------------------
    def feed(self, text: str) -> ParsedDelta:
        # Large inputs go in pieces (same result, by the streaming contract) so that the
        # buffer, which is sliced once per block, stays short: linear time on many blocks.
        delta = ParsedDelta()
        for start in range(0, len(text), FEED_PIECE_CHARS):
            self._buffer += text[start : start + FEED_PIECE_CHARS]
            piece = self._drain(final=False)
            delta.content += piece.content
            delta.tool_calls.extend(piece.tool_calls)
        return delta

    def finish(self) -> ParsedDelta:
        delta = self._drain(final=True)
        if not self._after_call:
            delta.content += self._buffer
        self._consume(len(self._buffer))
        return delta

    def _consume(self, length: int) -> None:
        self._buffer = self._buffer[length:]
        self._outside_searched = self._blank = 0

    def _first_non_space(self) -> int:
        self._blank = skip_whitespace(self._buffer, self._blank)
        return self._blank

    def _drain(self, *, final: bool) -> ParsedDelta:
        delta = ParsedDelta()
        while self._buffer:
            if self._block_marker is None:
                if not self._step_outside(delta, final):
                    break
            elif not self._step_block(delta, final):
                break
        return delta

    def _step_outside(self, delta: ParsedDelta, final: bool) -> bool:
        markers = self.start_markers + self.silent_markers
        longest = max((len(m) for m in markers), default=1)
        at, marker = find_first(self._buffer, markers, max(0, self._outside_searched - longest + 1))
        self._outside_searched = len(self._buffer)
        if self._opener_armed and self.openers:
            first = self._first_non_space()
            if first < len(self._buffer) and (at == -1 or first < at):
                if self._buffer[first] in self.openers:
                    at, marker = first, self._buffer[first]
        if at == -1:
            return self._emit_plain(delta, final)
        self._emit_content(delta, self._buffer[:at], before_marker=True)
        self._consume(at)
        if marker in self.silent_markers:
            self._consume(len(marker))
            self._opener_armed = True
        else:
            self._block_marker = marker
            self._block_reset()
        return True

    def _emit_plain(self, delta: ParsedDelta, final: bool) -> bool:
        """No marker in the buffer: emit what cannot start one. False: wait for more."""
        hold = 0 if final else partial_marker_len(self._buffer, self.start_markers + self.silent_markers)
        ready = self._buffer[: len(self._buffer) - hold]
        blank = self._first_non_space() >= len(ready)
        if self._opener_armed and self.openers and blank and not final:
            return False  # only whitespace so far: an opener may still come
        if self._after_call and blank:
            return False  # whitespace after a call: dropped if another call or the end follows
        self._emit_content(delta, ready, before_marker=False)
        self._consume(len(ready))
        return False

    def _emit_content(self, delta: ParsedDelta, text: str, *, before_marker: bool) -> None:
        if not text:
            return
        if self._after_call and before_marker and not text.strip():
            return  # whitespace between two calls
        if text.strip():
            self._opener_armed = False
            self._after_call = False
        delta.content += text

    def _step_block(self, delta: ParsedDelta, final: bool) -> bool:
        assert self._block_marker is not None
        outcome = self._scan_block(self._block_marker, final)
        if outcome is None:
            return False
        if not all(self.accepts_call_name(call.name) for call in outcome.calls):
            outcome = BlockOutcome(outcome.length, content=self._buffer[: outcome.length])
        self._block_marker = None
        self._consume(outcome.length)
        if outcome.content:
            self._after_call = False
            self._emit_content(delta, outcome.content, before_marker=False)
        for call in outcome.calls:
            self._emit_call(delta, call)
        return True

    def _emit_call(self, delta: ParsedDelta, call: ParsedCall) -> None:
        index = self._call_count
        self._call_count += 1
        delta.tool_calls.append(ToolCallDelta(index=index, id=new_call_id(), name=call.name))
        delta.tool_calls.append(ToolCallDelta(index=index, arguments=call.arguments))
        self._opener_armed = True
        self._after_call = True

    # -- helpers for formats whose block ends where a bracketed value closes --------------
    def _fallback(self, marker: str) -> BlockOutcome:
        """The marker was not the start of a call: it is content; what follows is rescanned."""
        return BlockOutcome(len(marker), content=marker)

    def _value_end(self, start: int, first_chars: str, quotes: str = '"') -> int | None:
        """Where the bracketed value at ``start`` of the buffer ends: an index, None while it
        is open, -1 when the text there is not one. Scans each character once per block."""
        if self._extent is None or self._extent_start != start:
            self._extent = BracketExtent(first_chars, quotes)
            self._extent_start = self._extent_fed = start
        end = self._extent.feed(self._buffer[self._extent_fed :])
        self._extent_fed = len(self._buffer)
        if end is None or end == -1:
            return end
        return start + end

    def _block_reset(self) -> None:
        self._extent = None
        self._space_ends: dict[int, int] = {}

    def _skip_space_from(self, start: int) -> int:
        """``skip_whitespace(buffer, start)``, remembered for this block (the buffer only
        grows while it is open), so a block waiting behind a run of whitespace scans it once."""
        end = skip_whitespace(self._buffer, self._space_ends.get(start, start))
        self._space_ends[start] = end
        return end

    def _scan_call_object(self, marker: str, pos: int, final: bool, known_names: set[str] | None = None
                          ) -> BlockOutcome | None:
        """A block that is one ``{"name": ..., "arguments"|"parameters": ...}`` object at
        ``pos``; with ``known_names``, the name must be one of them."""
        if pos == len(self._buffer):
            return self._fallback(marker) if final else None
        key = self._skip_space_from(pos + 1)
        if self._buffer[pos] != "{" or (key < len(self._buffer) and self._buffer[key] != '"'):
            return self._fallback(marker)
        if key == len(self._buffer):
            return self._fallback(marker) if final else None
        end = self._value_end(pos, "{")
        if end is None:
            return self._fallback(marker) if final else None
        ok, value = decode_json(self._buffer[pos:end]) if end != -1 else (False, None)
        call = call_from_object(value) if ok else None
        if call is None or (known_names is not None and call.name not in known_names):
            return self._fallback(marker)
        return BlockOutcome(end, [call])


class EndMarkerToolParser(MarkupToolParser):
    """Blocks closed by an end marker: ``<tool_call>...</tool_call>``.

    When the end arrives, the block runs from the *last* start marker before it, so stray
    start markers earlier are content. A block still open at the end of the output is
    accepted when ``_parse_body`` can read it as complete (models often stop right before
    the closing tag), and is content otherwise.
    """

    end_marker = ""

    def _block_reset(self) -> None:
        super()._block_reset()
        self._searched = 0

    def _end_marker_for(self, start_marker: str) -> str:
        return self.end_marker

    def _parse_body(self, body: str) -> list[ParsedCall] | None:
        raise NotImplementedError

    def _parse_unterminated(self, body: str) -> list[ParsedCall] | None:
        """A block the output ended inside (the end marker never came)."""
        return self._parse_body(body)

    def _scan_block(self, marker: str, final: bool) -> BlockOutcome | None:
        buffer = self._buffer
        end_marker = self._end_marker_for(marker)
        end = buffer.find(end_marker, max(len(marker), self._searched - len(end_marker)))
        if end == -1:
            self._searched = len(buffer)
            if not final:
                return None
            calls = self._parse_unterminated(buffer[len(marker) :])
            return BlockOutcome(len(buffer), calls) if calls else BlockOutcome(len(buffer), content=buffer)
        start = buffer.rfind(marker, 0, end)
        length = end + len(end_marker)
        calls = self._parse_body(buffer[start + len(marker) : end])
        if not calls:
            return BlockOutcome(length, content=buffer[:length])
        return BlockOutcome(length, calls, content=buffer[:start])
