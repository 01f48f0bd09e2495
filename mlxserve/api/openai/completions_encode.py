"""Neutral completion results → OpenAI text_completion objects and stream chunks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from mlxserve.api.openai.chat_encode import ResponseMeta, usage_json
from mlxserve.api.openai.logprobs_encode import TokenTexts, completion_logprobs
from mlxserve.api.sse import sse_data, sse_done
from mlxserve.serving.assembler import CompletedMessage, MessageDelta, Usage
from mlxserve.serving.generation import PreparedPrompt


def completion_usage(prompts: list[PreparedPrompt], results: list[Usage]) -> Usage:
    return Usage(prompt_tokens=sum(len(p.token_ids) for p in prompts),
                 completion_tokens=sum(u.completion_tokens for u in results),
                 cached_tokens=max((u.cached_tokens for u in results), default=0))


def completion_response(meta: ResponseMeta, prompts: list[PreparedPrompt],
                        results: list[CompletedMessage], echo_texts: list[str],
                        texts: TokenTexts) -> dict[str, Any]:
    choices = []
    for i, result in enumerate(results):
        prefix = echo_texts[i]
        choices.append({
            "index": i, "text": prefix + result.content,
            "logprobs": completion_logprobs(result.logprobs, texts, len(prefix)),
            "finish_reason": result.finish_reason,
        })
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

    def text_chunk(self, index: int, text: str, delta: MessageDelta | None) -> str:
        offset = self._offsets.get(index, 0)
        self._offsets[index] = offset + len(text)
        logprobs = completion_logprobs(delta.logprobs, self.texts, offset) if delta else None
        finish = delta.finish_reason if delta else None
        return self.chunk([{"index": index, "text": text, "logprobs": logprobs,
                            "finish_reason": finish}])


async def completion_event_stream(encoder: CompletionChunkEncoder, prompts: list[PreparedPrompt],
                                  echo_texts: list[str],
                                  deltas: AsyncIterator[tuple[int, MessageDelta]]
                                  ) -> AsyncIterator[str]:
    for index, prefix in enumerate(echo_texts):
        if prefix:
            yield encoder.text_chunk(index, prefix, None)
    usages: list[Usage] = []
    async for index, delta in deltas:
        if delta.content or delta.logprobs or delta.finish_reason is not None:
            yield encoder.text_chunk(index, delta.content, delta)
        if delta.usage is not None:
            usages.append(delta.usage)
    if encoder.include_usage:
        yield encoder.chunk([], completion_usage(prompts, usages))
    yield sse_done()
