"""gpt-oss (harmony): the ``analysis`` channel is reasoning, ``final`` and preambles are
content. Tool-call messages (a header with ``to=``) pass through as harmony markup in the
content, so the gpt_oss tool parser that follows can read them."""

from __future__ import annotations

from ..base import ParsedDelta, ReasoningParser
from ..harmony_scanner import MESSAGE, HarmonyEvent, HarmonyScanner

REASONING_CHANNELS = ("analysis",)


class GptOssReasoningParser(ReasoningParser):
    def __init__(self, *, prompt_opens_reasoning: bool = False):
        super().__init__(prompt_opens_reasoning=prompt_opens_reasoning)
        self._scanner = HarmonyScanner()
        self._opened_call = False  # the current tool-call message's header was passed on

    def feed(self, text: str) -> ParsedDelta:
        return self._route(self._scanner.feed(text))

    def finish(self) -> ParsedDelta:
        return self._route(self._scanner.finish())

    def _route(self, events: list[HarmonyEvent]) -> ParsedDelta:
        delta = ParsedDelta()
        for event in events:
            header = event.header
            if event.kind == "text":
                delta.content += event.text
            elif header is not None and header.recipient:
                delta.content += self._pass_call_markup(event)
            elif header is not None and header.channel in REASONING_CHANNELS:
                delta.reasoning += event.text if event.kind == "body" else ""
            elif event.kind == "body":
                delta.content += event.text
        return delta

    def _pass_call_markup(self, event: HarmonyEvent) -> str:
        assert event.header is not None
        text = ""
        if not self._opened_call:
            text = event.header.raw + MESSAGE
            self._opened_call = True
        if event.kind == "body":
            return text + event.text
        self._opened_call = False
        return text + event.text  # for "end" the terminator itself ("" when implied)
