"""Prefill of one step (MLX, engine thread only): a request's prompt chunk on its own
caches, or several whole short prompts in one right-padded forward into a new batch.

A prompt prefilled alone runs on the request's own mlx-lm caches (``make_prompt_cache``),
the exact ops of ``mlx_lm.stream_generate``; as there, the last prompt token runs alone so
no ``lm_head`` is computed over the chunk, unless the chunk is short (``prefill_chunk``).
Prefill from embeddings (the vision hook): a request whose ``multimodal.encode`` is set
gets ``encode(model) -> (embeddings (L, hidden), position_ids (3, L) | None, extras)``
called once before its first chunk; chunks then feed ``embeddings[start:end]``
(``input_embeddings=``) and, for M-RoPE, ``position_ids=``.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from mlxserve.cache.batch_kv import BatchCache
from mlxserve.engine.model_step import forward
from mlxserve.engine.prefix import seeded_batch, seeded_length
from mlxserve.engine.prompt_logprobs import forward_logprobs
from mlxserve.engine.row import Row
from mlxserve.engine.scheduler import PrefillChunk
from mlxserve.errors import InvalidRequest


ONE_FORWARD_TAIL = 64  # a last prompt chunk this short runs in one forward


def encode_media(model: Any, row: Row) -> None:
    media = row.request.multimodal
    if media is None or media.encode is None:
        return
    embeddings, position_ids, extras = media.encode(model)
    if embeddings.shape[0] != len(row.request.prompt_tokens):
        raise InvalidRequest("the media embeddings do not match the prompt length")
    row.embeddings, row.position_ids, row.vision_extras = embeddings, position_ids, extras


def forward_chunk(model: Any, row: Row, start: int, end: int) -> mx.array:
    """Logits (1, n, V) of prompt positions [start, end) on the row's own caches."""
    tokens = row.prompt[start:end][None]
    if row.embeddings is None:
        return forward(model, tokens, row.cache)
    extra: dict = {"input_embeddings": row.embeddings[start:end][None]}
    if row.position_ids is not None:
        extra.update(position_ids=row.position_ids[:, start:end][:, None],
                     vision_extras=row.vision_extras)
    return forward(model, tokens, row.cache, **extra)


BUCKET_STEP = 64  # above 256 tokens, prefill forwards pad to multiples of this


def bucket_length(n: int) -> int:
    """The padded length of a bucketed prefill forward of ``n`` tokens: 16, 32, ..., 256,
    then multiples of ``BUCKET_STEP``, so a server sees a bounded set of prefill shapes
    (9 up to the default 512-token chunk, each warmed at start-up). Steps of 256 were
    measured on the H200 to pad a burst of ~350-414-token prompts to 512: 31% of a group
    prefill's tokens were padding (results/h200_session8.md)."""
    if n <= 256:
        return max(16, 1 << (n - 1).bit_length())
    return -(-n // BUCKET_STEP) * BUCKET_STEP


def group_sizes(n: int) -> list[int]:
    """A bucketed group of ``n`` whole prompts runs as groups of powers of two, largest
    first (22 -> 16, 4, 2): with its padded width a bucket too, a server then sees a bounded
    set of group shapes, warmed at start-up. MLX's CUDA back-end builds the attention of
    each new prefill shape on first use (~50-90 ms on the H200), and unbucketed groups
    met a new (rows, width) pair in nearly every step of a burst (results/h200_session9.md)."""
    return [1 << k for k in reversed(range(n.bit_length())) if n >> k & 1]


def split_groups(whole: list, length) -> list[list]:
    """Whole prompts (``length`` of each) sorted by length, so similar lengths pad alike,
    in groups of ``group_sizes``; a last single row is left out (it prefills alone)."""
    ranked, groups, start = sorted(whole, key=length), [], 0
    for size in group_sizes(len(ranked)):
        groups.append(ranked[start:start + size])
        start += size
    return [g for g in groups if len(g) >= 2]


def bucketable(row: Row) -> bool:
    """Plain KV caches only (the padding is trimmed off exactly), text, no prompt
    logprobs (its logits are not read), no sparse positions."""
    from mlx_lm.models.cache import KVCache

    return (row.embeddings is None and row.request.multimodal is None
            and row.request.prompt_logprobs is None and getattr(row, "sparse", None) is None
            and all(type(c) is KVCache for c in row.cache))


def forward_bucketed(model: Any, row: Row, start: int, end: int) -> mx.array:
    """Prompt positions [start, end) on the row's caches, right-padded to
    ``bucket_length``: the padding comes after every real token (the causal mask hides it
    from them) and is trimmed off the caches after, so the cache holds exactly what an
    unpadded forward writes. Returns the (1, padded, V) logits (computed only if read)."""
    pad = bucket_length(end - start) - (end - start)
    tokens = row.prompt[start:end]
    if pad:
        tokens = mx.concatenate([tokens, mx.zeros((pad,), dtype=tokens.dtype)])
    logits = forward(model, tokens[None], row.cache)
    for cache in row.cache:
        cache.trim(pad)
    return logits


def prefill_chunk(model: Any, row: Row, chunk: PrefillChunk,
                  bucket: bool = False) -> mx.array | None:
    """Run one chunk; the (1, V) logits of the prompt's last token when it ends the prompt.
    A chunk's logits are not computed unless the request wants prompt logprobs, except a
    short last chunk's: up to ``ONE_FORWARD_TAIL`` tokens run in one forward (its lm_head
    over those few positions costs less than a second forward of the weights; a prefix-cache
    hit's suffix and short prompts are such chunks). A longer last chunk runs all but its
    last token, then that token alone (as ``stream_generate``), so no lm_head is computed
    over it. ``bucket``: forwards are padded to ``bucket_length``."""
    if row.embeddings is None:  # the first chunk (after a prefix-cache hit: not at 0)
        encode_media(model, row)
    end = chunk.start + chunk.length
    padded = bucket and bucketable(row)
    if not chunk.is_last:
        if padded:
            forward_bucketed(model, row, chunk.start, end)
        else:
            keep_prompt_logprobs(row, forward_chunk(model, row, chunk.start, end),
                                 chunk.start)
        mx.async_eval([c.state for c in row.cache]
                      + (row.prompt_lp[-1].arrays() if row.prompt_lp else []))
        return None
    if chunk.length <= ONE_FORWARD_TAIL:  # its lm_head over n positions < a 2nd forward
        if padded:
            return forward_bucketed(model, row, chunk.start, end)[:, chunk.length - 1, :]
        logits = forward_chunk(model, row, chunk.start, end)
        if chunk.length > 1:
            keep_prompt_logprobs(row, logits[:, :-1], chunk.start)
        return logits[:, -1, :]
    if padded:
        forward_bucketed(model, row, chunk.start, end - 1)
    else:
        logits = forward_chunk(model, row, chunk.start, end - 1)
        keep_prompt_logprobs(row, logits, chunk.start)
    return forward_chunk(model, row, end - 1, end)[:, -1, :]


def keep_prompt_logprobs(row: Row, logits: mx.array, start: int) -> None:
    if row.request.prompt_logprobs is not None:
        row.prompt_lp.append(forward_logprobs(logits[0], row.prompt, start,
                                              row.request.prompt_logprobs))


def prefill_together(model: Any, prototype: list, rows: list[Row],
                     bucket: bool = False) -> tuple[BatchCache, mx.array]:
    """Whole prompts of several text requests in one batched forward (as mlx-lm's
    BatchGenerator): right-padded ``prompt[:-1]`` into fresh rows of a new batch, whose
    per-row lengths then drop the padding, then the last tokens together. Rows whose own
    caches already hold a prefix (a prefix-cache hit) start the batch with it and send
    only the rest (each row then writes at its own column, as a verify step's rows do).
    ``bucket``: the padded width is ``bucket_length`` of the longest, so a server sees a
    bounded set of group shapes (each new one costs kernel set-up and new buffer sizes).
    Returns the batch and the (B, V) logits of the last tokens."""
    starts = [max(0, seeded_length(r)) for r in rows]
    batch = seeded_batch(prototype, rows, starts) if any(starts) else BatchCache.fresh(
        prototype, [r.request.request_id for r in rows])
    heads = [r.request.prompt_tokens[s:-1] for r, s in zip(rows, starts)]
    lengths = [len(h) for h in heads]
    longest = max(lengths)
    if longest > 0:
        width = bucket_length(longest) if bucket else longest
        padded = mx.array([h + [0] * (width - len(h)) for h in heads], dtype=mx.uint32)
        batch.begin_padded(lengths)
        forward(model, padded, batch.layers)
        batch.end_padded([s + n for s, n in zip(starts, lengths)])
    last = mx.array([r.request.prompt_tokens[-1] for r in rows], dtype=mx.uint32)
    logits = forward(model, last[:, None], batch.layers)[:, -1, :]
    batch.advance(1)
    return batch, logits
