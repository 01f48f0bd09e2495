"""How much attention each prompt token receives from the prompt's last positions, on an
mlx-lm text model (SpecPrefill's scorer; an explicit adapter over the model's own layers,
no patching).

The trunk runs layer by layer over the tail tokens; before each scored layer the adapter
computes that layer's queries of the tail from the layer's own input norm, query
projection, query norm and RoPE, then, once the layer has written its keys, the softmax
attention of those queries over every cached key. Scored layers: those with ``self_attn``
whose cache is a plain (full-history) KV cache; sliding-window layers (a rotating cache)
and SSM / linear-attention layers (an ``ArraysCache``) run but are not scored, so a
hybrid model is scored on its attention layers. Per layer: mean over the tail queries,
then the largest value over heads and layers.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx

# Families whose trunk scales the token embeddings by sqrt(hidden size) (in bfloat16).
_SCALED_EMBEDDINGS = ("gemma", "gemma2", "gemma3_text")


def scoring_unsupported(model: Any, cache: list) -> str | None:
    """Why ``model`` cannot be scored (None when it can)."""
    trunk = getattr(model, "model", None)
    if trunk is None or not hasattr(trunk, "embed_tokens") or not hasattr(trunk, "layers"):
        return f"{type(model).__name__} does not expose its trunk (model.embed_tokens, layers)"
    if not any(_scored(layer, c) for layer, c in zip(trunk.layers, cache)):
        return "it has no full-attention layer to score with"
    return None


def trunk_forward(model: Any, tokens: mx.array, cache: list) -> mx.array:
    """Run prompt tokens (1, L) through the trunk only (no head: a draft needs its KV)."""
    return model.model(tokens, cache)


def tail_scores(model: Any, tokens: mx.array, cache: list) -> mx.array:
    """Run the prompt's tail (1, T) through the trunk on ``cache`` (which holds the tokens
    before it) and return (N,) float32 scores of every position 0..N-1 of the prompt."""
    trunk = model.model
    h = trunk.embed_tokens(tokens)
    if getattr(getattr(model, "args", None), "model_type", None) in _SCALED_EMBEDDINGS:
        h = h * mx.array(trunk.args.hidden_size ** 0.5, mx.bfloat16).astype(h.dtype)
    per_layer = []
    for layer, c in zip(trunk.layers, cache):
        scored = _scored(layer, c)
        if scored:
            offset, projected = c.offset, _projected_queries(layer, h)
        h = layer(h, _mask(h, c), c)
        if scored:
            queries = _rotated_queries(layer.self_attn, projected, c.keys.shape[-1], offset)
            per_layer.append(_received(queries, c.keys[..., :c.offset, :],
                                       layer.self_attn.scale))
    return mx.max(mx.stack(per_layer), axis=0)


def _mask(h: mx.array, cache: Any):
    """The layer's mask for the tail, as the model makes it for its kind of cache."""
    if hasattr(cache, "keys"):  # KV caches, rotating (sliding-window) ones included
        from mlx_lm.models.base import create_attention_mask

        return create_attention_mask(h, cache)
    return cache.make_mask(h.shape[1])  # an SSM layer's ArraysCache


def _scored(layer: Any, cache: Any) -> bool:
    attn = getattr(layer, "self_attn", None)
    return (attn is not None and hasattr(attn, "q_proj") and hasattr(cache, "keys")
            and getattr(cache, "max_size", None) is None)


def _projected_queries(layer: Any, h: mx.array) -> mx.array:
    """(B, L, heads, width) query projections of the layer's input (width may hold a
    gate after the head's dims, as gated-attention layers do)."""
    attn = layer.self_attn
    x = layer.input_layernorm(h)
    B, L, _ = x.shape
    heads = getattr(attn, "n_heads", None) or attn.num_attention_heads
    return attn.q_proj(x).reshape(B, L, heads, -1)


def _rotated_queries(attn: Any, projected: mx.array, head_dim: int, offset) -> mx.array:
    queries = projected[..., :head_dim]
    if hasattr(attn, "q_norm"):
        queries = attn.q_norm(queries)
    return attn.rope(queries.transpose(0, 2, 1, 3), offset=offset)


def _received(queries: mx.array, keys: mx.array, scale: float) -> mx.array:
    """(N,) attention each key receives: softmax over keys (causal), mean over the queries,
    max over heads. ``queries`` (1, Hq, T, D), ``keys`` (1, Hkv, N, D)."""
    _, hq, t, d = queries.shape
    hkv, n = keys.shape[1], keys.shape[2]
    q = queries.astype(mx.float32).reshape(hkv, hq // hkv, t, d) * scale
    k = keys[0].astype(mx.float32)[:, None]  # (Hkv, 1, N, D)
    logits = q @ k.swapaxes(-1, -2)  # (Hkv, rep, T, N)
    visible = mx.arange(n)[None, :] <= (n - t + mx.arange(t))[:, None]
    probs = mx.softmax(mx.where(visible, logits, -mx.inf), axis=-1)
    return probs.mean(axis=2).reshape(-1, n).max(axis=0)
