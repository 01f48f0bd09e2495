"""Neutral completion results → OpenAI text_completion objects and stream chunks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from mlxserve.api.openai.chat_encode import ResponseMeta, prefilled_total, usage_json
from mlxserve.api.openai.logprobs_encode import TokenTexts, completion_logprobs
from mlxserve.api.openai.prompt_logprobs_encode import (
    PromptLogprobsAsked, echo_logprobs, vllm_prompt_logprobs,
)
from mlxserve.api.sse import sse_data, sse_done
from mlxserve.serving.assembler import CompletedMessage, MessageDelta, Usage
from mlxserve.serving.generation import PreparedPrompt


def completion_usage(prompts: list[PreparedPrompt], results: list[Usage]) -> Usage:
    return Usage(prompt_tokens=sum(len(p.token_ids) for p in prompts),
                 completion_tokens=sum(u.completion_tokens for u in results),
                 cached_tokens=max((u.cached_tokens for u in results), default=0),
                 prefilled_tokens=prefilled_total(results))


def _joined(first: dict | None, second: dict | None) -> dict | None:
    """Two legacy logprobs objects as one (the echoed prompt's, then the completion's)."""
    if first is None or second is None:
        return first or second
    return {key: first[key] + second[key] for key in first}


def _choice_logprobs(result: CompletedMessage, prompt: PreparedPrompt, prefix: str,
                     asked: PromptLogprobsAsked, texts: TokenTexts) -> dict | None:
    generated = completion_logprobs(result.logprobs, texts, len(prefix))
    if asked.echo_top is None:
        return generated
    echoed = echo_logprobs(prompt.token_ids, result.prompt_logprobs, asked.echo_top, texts)
    return _joined(echoed, generated)


def completion_response(meta: ResponseMeta, prompts: list[PreparedPrompt],
                        results: list[CompletedMessage], echo_texts: list[str],
                        texts: TokenTexts, asked: PromptLogprobsAsked = PromptLogprobsAsked()
                        ) -> dict[str, Any]:
    choices = []
    choice_prompts = [p for p in prompts for _ in p.requests]
    for i, result in enumerate(results):
        prefix = echo_texts[i]
        choice = {"index": i, "text": prefix + result.content,
                  "logprobs": _choice_logprobs(result, choice_prompts[i], prefix, asked, texts),
                  "finish_reason": result.finish_reason}
        if asked.vllm_top is not None:
            choice["prompt_logprobs"] = vllm_prompt_logprobs(result.prompt_logprobs,
                                                             asked.vllm_top, texts)
        choices.append(choice)
    usage = completion_usage(prompts, [r.usage for r in results])
    return {"id": meta.id, "object": "text_completion", "created": meta.created,
            "model": meta.model, "choices": choices, "system_fingerprint": None,
            "usage": usage_json(usage)}


class CompletionChunkEncoder:
    def __init__(self, meta: ResponseMeta, texts: TokenTexts, include_usage: bool):
        self.meta = meta
        self.texts = texts
        self.include_usage = include_usage
        self._offsets: dict[int, int] = {}

    def chunk(self, choices: list[dict[str, Any]], usage: Usage | None = None) -> str:
        body: dict[str, Any] = {"id": self.meta.id, "object": "text_completion",
                                "created": self.meta.created, "model": self.meta.model,
                                "system_fingerprint": None, "choices": choices}
        if self.include_usage:
            body["usage"] = usage_json(usage) if usage is not None else None
        return sse_data(body)

    def text_chunk(self, index: int, text: str, delta: MessageDelta | None,
                   echoed: dict | None = None) -> str:
        """``text`` with the logprobs of ``delta`` (or ``echoed``, an echoed prompt's)."""
        offset = self._offsets.get(index, 0)
        self._offsets[index] = offset + len(text)
        logprobs = completion_logprobs(delta.logprobs, self.texts, offset) if delta else echoed
        finish = delta.finish_reason if delta else None
        return self.chunk([{"index": index, "text": text, "logprobs": logprobs,
                            "finish_reason": finish}])


async def completion_event_stream(encoder: CompletionChunkEncoder, prompts: list[PreparedPrompt],
                                  echo_texts: list[str],
                                  deltas: AsyncIterator[tuple[int, MessageDelta]],
                                  asked: PromptLogprobsAsked = PromptLogprobsAsked()
                                  ) -> AsyncIterator[str]:
    echo_waits = asked.echo_top is not None  # each echo waits for its prompt logprobs
    for index, prefix in enumerate(echo_texts):
        if prefix and not echo_waits:
            yield encoder.text_chunk(index, prefix, None)
    choice_prompts = [p for p in prompts for _ in p.requests]
    usages: list[Usage] = []
    async for index, delta in deltas:
        if echo_waits and delta.prompt_logprobs is not None:
            echoed = echo_logprobs(choice_prompts[index].token_ids, delta.prompt_logprobs,
                                   asked.echo_top, encoder.texts)
            yield encoder.text_chunk(index, echo_texts[index], None, echoed)
        if delta.content or delta.logprobs or delta.finish_reason is not None:
            yield encoder.text_chunk(index, delta.content, delta)
        if delta.usage is not None:
            usages.append(delta.usage)
    if encoder.include_usage:
        yield encoder.chunk([], completion_usage(prompts, usages))
    yield sse_done()
