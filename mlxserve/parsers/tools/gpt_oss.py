"""gpt-oss (harmony) tool calls: a message whose header names a recipient,
``<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{...}<|call|>``.
Other messages' text is content (use the gpt_oss reasoning parser first to move the
``analysis`` channel into reasoning). A call message still open when the output ends
counts when its JSON is complete (``<|call|>`` is often a stop token the text lacks)."""

from __future__ import annotations

from ..base import ParsedDelta, ToolCallDelta, ToolParser
from ..harmony_scanner import MESSAGE, HarmonyEvent, HarmonyScanner
from ..text_scan import new_call_id
from .arguments import arguments_json

FUNCTIONS_PREFIX = "functions."


class GptOssToolParser(ToolParser):
    def __init__(self, tools: list[dict] | None = None):
        super().__init__(tools)
        self._scanner = HarmonyScanner()
        self._call_body = ""
        self._call_count = 0

    def feed(self, text: str) -> ParsedDelta:
        return self._route(self._scanner.feed(text))

    def finish(self) -> ParsedDelta:
        return self._route(self._scanner.finish())

    def _route(self, events: list[HarmonyEvent]) -> ParsedDelta:
        delta = ParsedDelta()
        for event in events:
            header = event.header
            if header is None or not header.recipient:
                delta.content += event.text if event.kind in ("text", "body") else ""
            elif event.kind == "body":
                self._call_body += event.text
            else:
                self._end_call(delta, header.recipient, header.raw, event.text)
        return delta

    def _end_call(self, delta: ParsedDelta, recipient: str, raw_header: str, terminator: str) -> None:
        body, self._call_body = self._call_body, ""
        name = recipient[len(FUNCTIONS_PREFIX) :] if recipient.startswith(FUNCTIONS_PREFIX) else recipient
        arguments = arguments_json(body.strip() or "{}")
        if arguments is None or not self.accepts_call_name(name):
            delta.content += raw_header + MESSAGE + body + terminator
            return
        index = self._call_count
        self._call_count += 1
        delta.tool_calls.append(ToolCallDelta(index=index, id=new_call_id(), name=name))
        delta.tool_calls.append(ToolCallDelta(index=index, arguments=arguments))
