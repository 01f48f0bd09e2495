"""A thinking budget (Anthropic's ``thinking.budget_tokens``): once a request has
generated that many tokens and its reasoning is still open, the reasoning is ended by
force: the engine request is stopped, the reasoning parser's closing tag (``</think>``)
is put after what was generated, and a continuation request (prompt + output + tag)
writes the answer. The continuation reads the stopped request's KV from the prefix cache
(an aborted request's tokens are stored), so the switch costs a tag's prefill, not the
prompt's. To the caller it is one stream: token counts are those of one request.

Works over the public engine surface only (``generate``, abort on close); models whose
reasoning is not closed by a tag (e.g. harmony channels) get no budget.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Any

from mlxserve.engine.request import EngineDelta, GenerateRequest

CLOSING = "\n{tag}\n\n"  # as chat templates write a finished reasoning block


@dataclass(frozen=True)
class ThinkingBudget:
    tokens: int  # generated tokens allowed before the reasoning is closed
    end_tag: str  # the reasoning parser's closing tag


@dataclass
class _Spent:
    """What the stopped request generated and reported."""

    token_ids: list[int]
    text: str = ""
    cached_tokens: int = 0


class BudgetedStream:
    """One request's EngineDelta objects, its reasoning closed after ``budget.tokens``."""

    def __init__(self, engine: Any, tokenizer: Any, budget: ThinkingBudget,
                 on_request: Callable[[str], None]):
        self._engine = engine
        self._tokenizer = tokenizer
        self._budget = budget
        self._on_request = on_request  # told the continuation's id (shutdown aborts it)

    @staticmethod
    def answer_id(request: GenerateRequest) -> str:
        """The engine request id of the answer written after the closed reasoning."""
        return f"{request.request_id}-answer"

    def _over_budget(self, spent: _Spent, request: GenerateRequest) -> bool:
        room = request.stop.max_tokens - len(spent.token_ids)
        return (len(spent.token_ids) >= self._budget.tokens
                and self._budget.end_tag not in spent.text and room > 8)

    async def deltas(self, request: GenerateRequest) -> AsyncIterator[EngineDelta]:
        spent = _Spent([])
        first = self._engine.generate(request)
        try:
            async for delta in first:
                spent.token_ids += delta.token_ids
                spent.text += delta.text
                spent.cached_tokens = delta.cached_tokens
                yield delta
                if delta.finished:
                    return
                if self._over_budget(spent, request):
                    break
        finally:
            await first.aclose()  # stops the engine request (abort) when it runs on
        async for delta in self._close_reasoning(request, spent):
            yield delta

    def _closing(self, request: GenerateRequest, spent: _Spent) -> EngineDelta:
        """The delta that ends the reasoning: text the detokenizer still held back, the
        tag, and the tag's token ids."""
        decoded = self._tokenizer.decode(spent.token_ids)
        held = decoded[len(spent.text):] if decoded.startswith(spent.text) else ""
        tag = CLOSING.format(tag=self._budget.end_tag)
        tag_ids = list(self._tokenizer.encode(tag, add_special_tokens=False))
        return EngineDelta(request.request_id, token_ids=tag_ids, text=held + tag,
                           prompt_tokens=len(request.prompt_tokens),
                           completion_tokens=len(spent.token_ids) + len(tag_ids),
                           cached_tokens=spent.cached_tokens)

    async def _close_reasoning(self, request: GenerateRequest, spent: _Spent
                               ) -> AsyncIterator[EngineDelta]:
        closing = self._closing(request, spent)
        yield closing
        written = closing.completion_tokens
        rest = replace(request, request_id=self.answer_id(request),
                       prompt_tokens=request.prompt_tokens + spent.token_ids
                       + closing.token_ids, prompt_logprobs=None,
                       stop=replace(request.stop,
                                    max_tokens=request.stop.max_tokens - written))
        self._on_request(rest.request_id)
        answer = self._engine.generate(rest)
        try:
            async for delta in answer:
                yield replace(delta, request_id=request.request_id,
                              prompt_tokens=len(request.prompt_tokens),
                              completion_tokens=written + delta.completion_tokens,
                              cached_tokens=spent.cached_tokens)
        finally:
            await answer.aclose()
