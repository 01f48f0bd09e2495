"""The engine's side of the prefix cache (MLX, engine thread only).

The store (``cache/prefix_cache.py``) is bookkeeping; this module decides which requests
use it and moves KV between it and rows:

- Which models: plain attention KV only (``cache_trimmable``, no sliding-window layers, every
  layer an mlx-lm ``KVCache``), since a stored sequence is cut at any hit length. Sliding
  window and hybrid/SSM models bypass the cache for now.
- Which requests: text only (a media request's placeholder tokens do not say which image it
  was) and not asking prompt logprobs (a hit skips the forward that computes them).
- Lookup at admission: the longest cached prefix, capped one token short of the prompt, so
  the first output token always comes from a real forward. The row's own caches start
  with those positions; the prefill reads only the suffix.
- Insert at finish (and at an abort once its first token came back, so the prompt's
  forward ran and was read back): prompt + output tokens whose KV was computed (all but
  the newest output token). A failed request stores nothing.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from mlxserve.cache.prefix_cache import PrefixCache, PrefixMatch
from mlxserve.engine.request import GenerateRequest

PREFIX_CACHE_SHARE = 0.25  # of the KV byte budget, when no size is configured


def prefix_budget_bytes(configured: int | None, kv_bytes: int) -> int:
    """The store's bytes: the configured size (at most half the KV budget, so requests
    always keep the larger part), else ``PREFIX_CACHE_SHARE`` of it."""
    if configured is not None:
        return min(int(configured), kv_bytes // 2)
    return int(kv_bytes * PREFIX_CACHE_SHARE)


def model_supports_prefix_cache(capabilities, prototype: list) -> bool:
    """Plain, trimmable attention KV in every layer (capabilities and the caches decide)."""
    if not capabilities.cache_trimmable or capabilities.has_sliding_window:
        return False
    from mlx_lm.models.cache import KVCache

    return bool(prototype) and all(type(c) is KVCache for c in prototype)


class EnginePrefixCache:
    def __init__(self, budget_bytes: int):
        self.store = PrefixCache(budget_bytes)

    @staticmethod
    def eligible(request: GenerateRequest) -> bool:
        return request.multimodal is None and request.prompt_logprobs is None

    def lookup(self, request: GenerateRequest) -> PrefixMatch | None:
        if not self.eligible(request) or len(request.prompt_tokens) < 2:
            return None
        return self.store.lookup(request.prompt_tokens, len(request.prompt_tokens) - 1)

    def release(self, matches: list) -> None:
        for match in matches:
            self.store.release(match)

    def insert(self, tokens: list[int], layers_kv: list | None) -> bool:
        """Store a copy of the first ``len(tokens)`` positions of ``layers_kv``
        ((keys, values) per layer, views of a row's storage)."""
        if layers_kv is None or not tokens:
            return False
        n = len(tokens)
        payload = [(mx.contiguous(k[..., :n, :]), mx.contiguous(v[..., :n, :]))
                   for k, v in layers_kv]
        nbytes = sum(k.nbytes + v.nbytes for k, v in payload)
        if not self.store.insert(tokens, payload, nbytes):
            return False
        mx.async_eval([a for kv in payload for a in kv])  # own buffers, not the row's
        return True


def seed_caches(caches: list, match: PrefixMatch | None) -> None:
    """A row's fresh per-layer caches start with the matched positions."""
    if match is None:
        return
    n = match.length
    for cache, (keys, values) in zip(caches, match.entry.payload):
        cache.keys, cache.values = keys[..., :n, :], values[..., :n, :]
        cache.offset = n


def final_kv(row: Any, start: bool = True) -> list | None:
    """A copy of a row's positions in its batch (taken as it leaves, done decoding: the
    request finishes when its last token is read back, after the row left). ``start``:
    ``async_eval`` the copies now; rows leaving together pass False and start all their
    copies in one call."""
    batch, rid = row.batch, row.request.request_id
    if batch is None or not EnginePrefixCache.eligible(row.request):
        return None
    n = batch.length(rid)
    copies = [(mx.contiguous(k[..., :n, :]), mx.contiguous(v[..., :n, :]))
              for k, v in row_kv(row, n)]
    if start:
        mx.async_eval([a for kv in copies for a in kv])
    return copies


def row_kv(row: Any, length: int) -> list | None:
    """(keys, values) per layer holding at least ``length`` positions of a row: its own
    caches while prefilling alone, else its slot of its batch (or the copy it kept when it
    left); None when it has fewer."""
    if row.final_kv is not None:
        enough = all(k.shape[2] >= length for k, _ in row.final_kv)
        return row.final_kv if enough else None
    if row.cache is not None:
        if any(c.keys is None or c.offset < length for c in row.cache):
            return None
        return [(c.keys, c.values) for c in row.cache]
    batch = row.batch
    if batch is None or batch.length(row.request.request_id) < length:
        return None
    slot = batch.slot(row.request.request_id)
    return [(layer.keys[slot:slot + 1], layer.values[slot:slot + 1]) for layer in batch.layers]
