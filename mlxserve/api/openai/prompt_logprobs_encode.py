"""Prompt-token logprobs in the two shapes clients read: OpenAI's legacy completions
``logprobs`` of an echoed prompt, and vLLM's ``prompt_logprobs`` list."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlxserve.api.openai.logprobs_encode import TokenTexts, completion_logprobs
from mlxserve.engine.request import TokenLogprob


@dataclass(frozen=True)
class PromptLogprobsAsked:
    """What a request asked for: ``echo`` with ``logprobs`` k (legacy shape) and/or vLLM's
    ``prompt_logprobs`` k; None where it did not ask."""

    echo_top: int | None = None
    vllm_top: int | None = None


def echo_logprobs(prompt_ids: list[int], entries: list[TokenLogprob | None] | None,
                  top: int, texts: TokenTexts) -> dict | None:
    """The echoed prompt's legacy ``logprobs`` (``top`` alternatives each); the first token
    has none: its ``token_logprobs`` and ``top_logprobs`` entries are null, as OpenAI's."""
    if entries is None:
        return None
    first = texts(prompt_ids[0])
    items = [TokenLogprob(e.token_id, e.logprob, e.top[:top]) for e in entries[1:]]
    rest = completion_logprobs(items, texts, len(first))
    return {"tokens": [first] + rest["tokens"], "token_logprobs": [None] + rest["token_logprobs"],
            "top_logprobs": [None] + rest["top_logprobs"], "text_offset": [0] + rest["text_offset"]}


def _vllm_entry(text: str, logprob: float, rank: int | None) -> dict[str, Any]:
    return {"logprob": logprob, "rank": rank, "decoded_token": text}


def _vllm_position(entry: TokenLogprob, top: int, texts: TokenTexts) -> dict[str, Any]:
    """The prompt token first, then the ``top`` best alternatives (as vLLM's dicts)."""
    out = {str(entry.token_id): _vllm_entry(texts(entry.token_id), entry.logprob, entry.rank)}
    for rank, (token, logprob) in enumerate(entry.top[:top], start=1):
        out.setdefault(str(token), _vllm_entry(texts(token), logprob, rank))
    return out


def vllm_prompt_logprobs(entries: list[TokenLogprob | None] | None, top: int,
                         texts: TokenTexts) -> list[dict[str, Any] | None] | None:
    if entries is None:
        return None
    return [None] + [_vllm_position(e, top, texts) for e in entries[1:]]
