"""Reasoning wrapped in tags at the start of the output: ``<think>...</think>answer``.

States: ``start`` (looking for the opening tag after leading whitespace), ``reasoning``
(until the closing tag), ``content`` (everything after). Leading whitespace of reasoning
and of the content that follows it is dropped, and so is whitespace just before the
closing tag, so ``<think>\\nplan\\n</think>\\n\\nanswer`` gives ``plan`` / ``answer``.
"""

from __future__ import annotations

from ..base import ParsedDelta, ReasoningParser
from ..text_scan import partial_marker_len, skip_whitespace


class ThinkTagReasoningParser(ReasoningParser):
    start_tag = "<think>"
    end_tag = "</think>"
    # True when output without the opening tag is still reasoning up to the closing tag
    # (templates that write the opening tag themselves, DeepSeek-R1 style).
    implicit_start = False

    def __init__(self, *, prompt_opens_reasoning: bool = False):
        super().__init__(prompt_opens_reasoning=prompt_opens_reasoning)
        self._state = "reasoning" if prompt_opens_reasoning else "start"
        self._buffer = ""
        self._at_section_start = True  # leading whitespace of the current section is dropped
        self._blank = 0  # the buffer's first chars known to be held whitespace (scanned once)

    def feed(self, text: str) -> ParsedDelta:
        self._buffer += text
        delta = ParsedDelta()
        while self._buffer:
            before = (self._state, len(self._buffer))
            if self._state == "start":
                self._step_start(final=False)
            elif self._state == "reasoning":
                delta.reasoning += self._step_reasoning(final=False)
            else:
                delta.content += self._take_content()
            if (self._state, len(self._buffer)) == before:
                break  # waiting for more text
        return delta

    def finish(self) -> ParsedDelta:
        delta = ParsedDelta()
        if self._state == "start":
            self._step_start(final=True)
        if self._state == "reasoning":
            delta.reasoning += self._step_reasoning(final=True)
        if self._state == "content":
            delta.content += self._take_content()
        self._buffer = ""
        return delta

    def _step_start(self, *, final: bool) -> None:
        self._blank = skip_whitespace(self._buffer, self._blank)  # held whitespace: scanned once
        stripped = self._buffer[self._blank :]
        if stripped.startswith(self.start_tag):
            self._buffer, self._blank = stripped[len(self.start_tag) :], 0
            self._state = "reasoning"
        elif stripped and self.start_tag.startswith(stripped) and not final:
            return  # could still become the opening tag
        elif stripped or final:
            self._state, self._blank = ("reasoning" if self.implicit_start else "content"), 0
            self._at_section_start = self.implicit_start

    def _step_reasoning(self, *, final: bool) -> str:
        if self._at_section_start:
            self._buffer = self._buffer.lstrip()
            if not self._buffer:
                return ""
            self._at_section_start = False
        end = self._buffer.find(self.end_tag, 0 if self.end_tag[0].isspace() else self._blank)
        if end != -1:
            reasoning = self._buffer[:end].rstrip()
            self._buffer = self._buffer[end + len(self.end_tag) :]
            self._state, self._blank = "content", 0
            self._at_section_start = True
            return reasoning
        if final:
            reasoning, self._buffer = self._buffer.rstrip(), ""
            return reasoning
        return self._release_reasoning()

    def _release_reasoning(self) -> str:
        """Reasoning up to its trailing whitespace, which waits (it is dropped before the
        end tag). Only the text after the held whitespace is looked at again."""
        ready = len(self._buffer) - partial_marker_len(self._buffer, (self.end_tag,))
        text = len(self._buffer[self._blank : ready].rstrip())
        kept = self._blank + text if text else 0
        reasoning, self._buffer = self._buffer[:kept], self._buffer[kept:]
        self._blank = ready - kept
        return reasoning

    def _take_content(self) -> str:
        if self._at_section_start:
            self._buffer = self._buffer.lstrip()
            if not self._buffer:
                return ""
            self._at_section_start = False
        content, self._buffer = self._buffer, ""
        return content


class Qwen3ReasoningParser(ThinkTagReasoningParser):
    """Qwen3 / QwQ: ``<think>`` opens the output when thinking; no tag means content."""


class DeepSeekR1ReasoningParser(ThinkTagReasoningParser):
    """DeepSeek-R1 and its distills: the template often writes ``<think>`` itself, so the
    output may hold only ``</think>``; everything before it is reasoning."""

    implicit_start = True


class GenericReasoningParser(ThinkTagReasoningParser):
    """Any tag pair, ``<think>``/``</think>`` unless told otherwise."""

    def __init__(
        self,
        *,
        prompt_opens_reasoning: bool = False,
        start_tag: str = "<think>",
        end_tag: str = "</think>",
    ):
        if not start_tag or not end_tag:
            raise ValueError("reasoning tags must not be empty")
        self.start_tag = start_tag
        self.end_tag = end_tag
        super().__init__(prompt_opens_reasoning=prompt_opens_reasoning)


def prompt_ends_inside_reasoning(prompt: str, start_tag: str = "<think>", end_tag: str = "</think>") -> bool:
    """True when the rendered prompt leaves a reasoning tag open (the template started the
    model's thinking), i.e. the last opening tag comes after the last closing tag."""
    opened = prompt.rfind(start_tag)
    return opened != -1 and opened > prompt.rfind(end_tag)


class MagistralReasoningParser(ThinkTagReasoningParser):
    """Mistral's reasoning models (Magistral): ``[THINK]...[/THINK]``."""

    start_tag = "[THINK]"
    end_tag = "[/THINK]"
