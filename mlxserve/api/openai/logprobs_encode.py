"""Token logprobs in OpenAI's two shapes (chat: content list; completions: legacy)."""

from __future__ import annotations

from typing import Any

from mlxserve.engine.request import TokenLogprob
from mlxserve.models.detokenizer import TokenBytes


class TokenTexts:
    """Text of single token ids, decoded once per response; ``raw`` gives their bytes."""

    def __init__(self, tokenizer: Any):
        self._tokenizer = tokenizer
        self._cache: dict[int, str] = {}
        self.raw = TokenBytes(tokenizer)

    def __call__(self, token_id: int) -> str:
        text = self._cache.get(token_id)
        if text is None:
            text = self._tokenizer.decode([token_id])
            self._cache[token_id] = text
        return text


def _chat_entry(texts: TokenTexts, token_id: int, logprob: float) -> dict[str, Any]:
    text = texts(token_id)
    return {"token": text, "logprob": logprob, "bytes": list(texts.raw(token_id))}


def chat_logprobs(items: list[TokenLogprob] | None, texts: TokenTexts) -> dict | None:
    if items is None:
        return None
    content = []
    for item in items:
        entry = _chat_entry(texts, item.token_id, item.logprob)
        entry["top_logprobs"] = [_chat_entry(texts, t, lp) for t, lp in item.top]
        content.append(entry)
    return {"content": content, "refusal": None}


def _legacy_top(texts: TokenTexts, item: TokenLogprob) -> dict[str, float]:
    """The position's alternatives plus the sampled token (OpenAI: up to logprobs + 1
    entries), so ``logprobs: 0`` gives the sampled token alone, never null. The dict is
    keyed by text, and distinct ids can share one (partial UTF-8 bytes all decode to "\ufffd"):
    a shared key holds the highest logprob of its ids, so max(values) stays the position's
    best (lm-eval's is_greedy compares it with ``token_logprobs``, the sampled id's own)."""
    top: dict[str, float] = {}
    for token_id, logprob in [*item.top, (item.token_id, item.logprob)]:
        text = texts(token_id)
        top[text] = max(logprob, top.get(text, logprob))
    return top


def completion_logprobs(items: list[TokenLogprob] | None, texts: TokenTexts,
                        text_offset_start: int) -> dict | None:
    if items is None:
        return None
    tokens, token_logprobs, tops, offsets = [], [], [], []
    offset = text_offset_start
    for item in items:
        text = texts(item.token_id)
        tokens.append(text)
        token_logprobs.append(item.logprob)
        tops.append(_legacy_top(texts, item))
        offsets.append(offset)
        offset += len(text)
    return {"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": tops,
            "text_offset": offsets}
