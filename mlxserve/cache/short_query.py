"""Attention for a few query tokens (a speculative verify step) without cuDNN, on CUDA.

MLX's CUDA backend runs every attention with more than one query token through cuDNN, and
cuDNN's graph is built for, and cached by, the exact shapes of q, k, v and the mask
(mlx/backend/cuda/scaled_dot_product_attention.cpp, ``build_sdpa_cache_key``). A verify
step's keys are one token longer each time, so every verify step met a new shape and paid
a graph build: on the H200 a verify step cost 3.1-4.4x a plain decode step with the
Qwen3.5-2B shape (random MTP heads) and n-gram speculation on SmolLM2 ran 0.75-0.81x of
plain decoding at batch 1-32 although it kept 3.6-3.75 tokens a step (results/
h200_session10.md). The one-token decode path is not affected: cuDNN's decoding graph is
keyed by the cache buffer's size, which grows in steps of 256.

``attention`` is what MLX computes when it has no fused kernel (scores, mask, a float32
softmax, values), written with MLX ops, which have no per-shape build: for W <= ``MAX_QUERIES``
queries the scores are a (B, H, W, T) array, small next to the step's weights.
``cache/row_attention.install`` routes these calls here on CUDA only; Metal's and the
CPU's attention have no per-shape cost.
"""

from __future__ import annotations

import mlx.core as mx

MAX_QUERIES = 16  # a verify step's width is k + 1 (k: num_speculative_tokens, <= 15)


def handles(q: mx.array, k: mx.array, v: mx.array, mask, sinks) -> bool:
    """2..MAX_QUERIES query tokens, 4-D grouped-query shapes, a causal / boolean /
    additive mask or none, no sinks."""
    if sinks is not None or q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        return False
    if not 2 <= q.shape[2] <= MAX_QUERIES or q.shape[2] > k.shape[2]:
        return False
    if not (mask is None or isinstance(mask, mx.array) or mask == "causal"):
        return False
    return (k.shape[1] == v.shape[1] and q.shape[1] % k.shape[1] == 0
            and k.shape[0] == v.shape[0] == q.shape[0] and k.shape[3] == q.shape[3])


def attention(q: mx.array, k: mx.array, v: mx.array, scale: float, mask) -> mx.array:
    """softmax(q k^T * scale + mask) v for ``handles``' case; ``"causal"`` lines the queries
    up with the last W keys (query i sees keys ``<= T - W + i``), as MLX does."""
    rows, heads, width, dim = q.shape
    kv_heads, keys = k.shape[1], k.shape[2]
    group = heads // kv_heads
    grouped = (q * scale).reshape(rows, kv_heads, group * width, dim)
    scores = (grouped @ k.swapaxes(-1, -2)).reshape(rows, kv_heads, group, width, keys)
    if isinstance(mask, str):
        queries = mx.arange(keys - width, keys)[:, None]
        scores = mx.where(mx.arange(keys)[None, :] <= queries, scores, -mx.inf)
    elif mask is not None:
        grouped_mask = _grouped(mask, heads, kv_heads)
        scores = (mx.where(grouped_mask, scores, -mx.inf) if mask.dtype == mx.bool_
                  else scores + grouped_mask.astype(scores.dtype))
    weights = mx.softmax(scores, axis=-1, precise=True)
    out = weights.reshape(rows, kv_heads, group * width, keys) @ v
    return out.reshape(rows, heads, width, v.shape[3])


def _grouped(mask: mx.array, heads: int, kv_heads: int) -> mx.array:
    """A mask broadcastable to (B, H, W, T), shaped to broadcast against the grouped scores
    (B, KV heads, group, W, T)."""
    mask = mask.reshape((1,) * (4 - mask.ndim) + mask.shape)
    if mask.shape[1] == 1:
        return mask[:, :, None]
    return mask.reshape(mask.shape[0], kv_heads, heads // kv_heads, *mask.shape[2:])
