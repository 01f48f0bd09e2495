"""Log-probabilities of prompt tokens, computed chunk by chunk in the prefill (MLX).

Only requests with ``GenerateRequest.prompt_logprobs`` set use this; the others keep the
last-token-only prefill (their chunk logits are never computed). A forward over prompt
positions ``[a, b)`` gives logits whose row ``i`` predicts token ``a + i + 1``; the
log-softmax of those rows, the chosen token's value and rank (1 = the most likely) and
the ``k`` best alternatives are kept as small lazy arrays — never more than one chunk's
``(positions, vocab)`` logits exist at a time. The first prompt token has no logprob
(nothing precedes it): its entry is ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx

from mlxserve.engine.request import TokenLogprob


@dataclass
class PromptLogprobChunk:
    """One forward's prompt logprobs, still lazy: the targets ``token_ids`` (n,), their
    logprobs and ranks (n,), and the top-k alternatives (n, k) when k > 0."""

    token_ids: mx.array
    logprobs: mx.array
    ranks: mx.array
    top_ids: mx.array | None = None
    top_logprobs: mx.array | None = None

    def arrays(self) -> list[mx.array]:
        return [a for a in (self.logprobs, self.ranks, self.top_ids, self.top_logprobs)
                if a is not None]


def chunk_logprobs(logits: mx.array, targets: mx.array, top_k: int) -> PromptLogprobChunk:
    """Logprobs of ``targets`` (n,) under ``logits`` (n, V), the same arithmetic as the
    sampler's logprobs (float32 log-softmax), plus ranks and ``top_k`` alternatives."""
    logits = logits.astype(mx.float32)
    logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
    index = targets.astype(mx.int32)[:, None]
    chosen = mx.take_along_axis(logprobs, index, axis=-1)
    ranks = mx.sum(logprobs > chosen, axis=-1).astype(mx.int32) + 1
    chunk = PromptLogprobChunk(targets, chosen[:, 0], ranks)
    if top_k > 0:
        k = min(top_k, logprobs.shape[-1])
        top_ids = mx.argpartition(-logprobs, kth=k - 1, axis=-1)[:, :k]
        top_vals = mx.take_along_axis(logprobs, top_ids, axis=-1)
        order = mx.argsort(-top_vals, axis=-1)
        chunk.top_ids = mx.take_along_axis(top_ids, order, axis=-1)
        chunk.top_logprobs = mx.take_along_axis(top_vals, order, axis=-1)
    return chunk


def forward_logprobs(logits: mx.array, prompt: mx.array, start: int, top_k: int
                     ) -> PromptLogprobChunk:
    """The chunk of a forward that started at prompt position ``start``: its ``n`` logits
    rows predict ``prompt[start + 1 : start + 1 + n]``."""
    n = logits.shape[0]
    return chunk_logprobs(logits, prompt[start + 1 : start + 1 + n], top_k)


def read_prompt_logprobs(chunks: list[PromptLogprobChunk]) -> list[TokenLogprob | None]:
    """The whole prompt's entries (first ``None``), read back from the device."""
    entries: list[TokenLogprob | None] = [None]
    for chunk in chunks:
        entries.extend(_read_chunk(chunk))
    return entries


def _read_chunk(chunk: PromptLogprobChunk) -> list[TokenLogprob]:
    ids = chunk.token_ids.tolist()
    values = chunk.logprobs.tolist()
    ranks = chunk.ranks.tolist()
    if chunk.top_ids is None:
        tops = [[] for _ in ids]
    else:
        tops = [list(zip(i, v)) for i, v in zip(chunk.top_ids.tolist(),
                                                chunk.top_logprobs.tolist())]
    return [TokenLogprob(t, v, top, rank=r) for t, v, top, r in zip(ids, values, tops, ranks)]
