"""Linear-time text scanning shared by the parsers: partial-marker hold-back, JSON and
Python bracket extents, call ids. No regular expressions, so no backtracking blow-ups."""

from __future__ import annotations

import secrets


def partial_marker_len(text: str, markers: tuple[str, ...]) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of a marker.

    That suffix must be held back while streaming: the next chunk may complete the marker.
    """
    longest = 0
    for marker in markers:
        limit = min(len(text), len(marker) - 1)
        for size in range(limit, longest, -1):
            if marker.startswith(text[-size:]):
                longest = size
                break
    return longest


def find_first(text: str, markers: tuple[str, ...], start: int = 0) -> tuple[int, str]:
    """Earliest occurrence of any marker at or after ``start``: (index, marker) or (-1, "")."""
    best, found = -1, ""
    for marker in markers:
        index = text.find(marker, start)
        if index != -1 and (best == -1 or index < best):
            best, found = index, marker
    return best, found


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


def skip_whitespace(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


class BracketExtent:
    """Finds where a bracketed value ends, fed incrementally (each char looked at once).

    ``feed(text)`` returns the index (in the concatenated input) just past the closing
    bracket of the first value, ``None`` while it is still open, or -1 when the input
    cannot start such a value. Strings are skipped using ``quotes`` with backslash escapes.
    """

    OPENERS = {"{": "}", "[": "]", "(": ")"}

    def __init__(self, first_chars: str = "{[", quotes: str = '"'):
        self.first_chars = first_chars
        self.quotes = quotes
        self._stack: list[str] = []
        self._quote = ""
        self._escaped = False
        self._started = False
        self._seen = 0
        self.result: int | None = None

    def feed(self, text: str) -> int | None:
        if self.result is not None:
            return self.result
        for offset, char in enumerate(text):
            outcome = self._step(char)
            if outcome is not None:
                self.result = -1 if outcome < 0 else self._seen + offset + 1
                return self.result
        self._seen += len(text)
        return None

    def _step(self, char: str) -> int | None:
        if not self._started:
            if char.isspace():
                return None
            if char not in self.first_chars:
                return -1
            self._started = True
            self._stack.append(self.OPENERS[char])
            return None
        if self._quote:
            if self._escaped:
                self._escaped = False
            elif char == "\\":
                self._escaped = True
            elif char == self._quote:
                self._quote = ""
            return None
        if char in self.quotes:
            self._quote = char
        elif char in self.OPENERS:
            self._stack.append(self.OPENERS[char])
        elif char in ")]}":
            if char != self._stack[-1]:
                return -1
            self._stack.pop()
            if not self._stack:
                return 1
        return None


def strip_code_fence(text: str) -> str:
    """``\\`\\`\\`json\\n{...}\\n\\`\\`\\``` → ``{...}``; other text is returned stripped."""
    body = text.strip()
    if body.startswith("```"):
        newline = body.find("\n")
        body = body[newline + 1 :] if newline != -1 else body[3:]
        if body.rstrip().endswith("```"):
            body = body.rstrip()[:-3]
    return body.strip()
