"""Streaming splitter for OpenAI's harmony format (gpt-oss).

Output looks like ``<|channel|>analysis<|message|>...<|end|><|start|>assistant<|channel|>
final<|message|>...<|return|>``; a tool call is a message whose header names a recipient:
``<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{...}<|call|>``.
The scanner turns text into events; the reasoning and tool parsers decide what each
message means. Text outside any message (a model not speaking harmony) is plain text.
"""

from __future__ import annotations

from dataclasses import dataclass

from .text_scan import find_first, partial_marker_len

START = "<|start|>"
CHANNEL = "<|channel|>"
MESSAGE = "<|message|>"
CONSTRAIN = "<|constrain|>"
TERMINATORS = ("<|end|>", "<|call|>", "<|return|>")
HEADER_OPENERS = (START, CHANNEL)
ALL_MARKERS = (START, CHANNEL, MESSAGE, CONSTRAIN) + TERMINATORS


@dataclass(frozen=True)
class HarmonyHeader:
    raw: str  # the header as written, markers included, without <|message|>
    channel: str
    recipient: str  # "" when the message has none ("functions.get_weather" for a call)


@dataclass(frozen=True)
class HarmonyEvent:
    kind: str  # "text" (outside any message) | "body" (message text) | "end" (message over)
    text: str = ""  # the text, or for "end" the terminator seen ("" when implied)
    header: HarmonyHeader | None = None


def parse_header(raw: str) -> HarmonyHeader:
    channel = ""
    at = raw.find(CHANNEL)
    if at != -1:
        words = raw[at + len(CHANNEL) :].replace("<|", " <|").split()
        channel = words[0] if words and not words[0].startswith("<|") else ""
    recipient = ""
    at = raw.find("to=")
    if at != -1:
        words = raw[at + 3 :].replace("<|", " <|").split()
        recipient = words[0] if words and not words[0].startswith("<|") else ""
    return HarmonyHeader(raw=raw, channel=channel, recipient=recipient)


class HarmonyScanner:
    def __init__(self) -> None:
        self._state = "outside"  # "outside" | "header" | "body"
        self._buffer = ""
        self._header: HarmonyHeader | None = None
        self._header_scanned = 0  # how far the header was searched for <|message|>

    def feed(self, text: str) -> list[HarmonyEvent]:
        self._buffer += text
        events: list[HarmonyEvent] = []
        while self._advance(events):
            pass
        return events

    def finish(self) -> list[HarmonyEvent]:
        events: list[HarmonyEvent] = []
        if self._state == "outside" and self._buffer:
            events.append(HarmonyEvent("text", self._buffer))
        elif self._state == "body":
            if self._buffer:
                events.append(HarmonyEvent("body", self._buffer, self._header))
            events.append(HarmonyEvent("end", "", self._header))
        # an unfinished header is markup only: dropped
        self._buffer, self._state, self._header = "", "outside", None
        return events

    def _advance(self, events: list[HarmonyEvent]) -> bool:
        """One step; False when more text is needed."""
        if self._state == "header":
            at = self._buffer.find(MESSAGE, max(0, self._header_scanned - len(MESSAGE)))
            if at == -1:
                self._header_scanned = len(self._buffer)
                return False
            self._header_scanned = 0
            self._header = parse_header(self._buffer[:at])
            self._buffer = self._buffer[at + len(MESSAGE) :]
            self._state = "body"
            return True
        stops = HEADER_OPENERS if self._state == "outside" else TERMINATORS + HEADER_OPENERS
        at, marker = find_first(self._buffer, stops)
        kind = "text" if self._state == "outside" else "body"
        if at == -1:
            hold = partial_marker_len(self._buffer, ALL_MARKERS)
            ready = self._buffer[: len(self._buffer) - hold]
            if ready:
                events.append(HarmonyEvent(kind, ready, self._header))
                self._buffer = self._buffer[len(ready) :]
            return False
        if at:
            events.append(HarmonyEvent(kind, self._buffer[:at], self._header))
        if self._state == "body":
            ended_by = marker if marker in TERMINATORS else ""
            events.append(HarmonyEvent("end", ended_by, self._header))
            self._header = None
        if marker in TERMINATORS:
            self._buffer = self._buffer[at + len(marker) :]
            self._state = "outside"
        else:
            self._buffer = self._buffer[at:]  # the header keeps its opening marker
            self._state = "header"
        return True
