"""The engine's side of the prefix cache (MLX, engine thread only).

The store (``cache/prefix_cache.py``) is bookkeeping; this module decides which requests
use it and moves KV between it and rows:

- Which models (``prefix_cache_mode``): trimmable attention KV in every layer (each an
  mlx-lm ``KVCache`` or a sliding-window ``RotatingKVCache``, whose rows then keep their
  full history: ``full_history``): a stored sequence is cut at any hit length ("trim").
  Hybrid models (attention plus SSM / gated-delta ``ArraysCache`` layers, whose state
  cannot be cut): "exact", each entry is a snapshot of a row's whole state at its length,
  and a hit takes a whole entry (the store's exact mode).
- Which requests: text, and media requests keyed on ``MultimodalInputs.key_tokens`` (the
  media tokens replaced by ids of the item's content: their placeholder ids alone do not
  say which image it was); not those asking prompt logprobs (a hit skips the forward that
  computes them).
- Lookup at admission: the longest cached prefix, capped one token short of the prompt, so
  the first output token always comes from a real forward. The row's own caches start
  with those positions; the prefill reads only the suffix.
- Insert at finish (and at an abort once its first token came back, so the prompt's
  forward ran and was read back): prompt + output tokens whose KV was computed (all but
  the newest output token; "exact": as many as the row's state holds, which may include
  the newest when a step for it was already launched). A failed request stores nothing.
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


def prefix_cache_mode(capabilities, prototype: list) -> str | None:
    """"trim" (every layer attention KV: plain ``KVCache`` or a sliding-window
    ``RotatingKVCache`` without kept tokens), "exact" (attention and SSM state layers), or
    None (a kind the cache does not serve). The caches decide, never the model's name."""
    from mlx_lm.models.cache import ArraysCache, KVCache, RotatingKVCache

    def attention(c) -> bool:
        return type(c) is KVCache or (type(c) is RotatingKVCache and not c.keep)

    if not prototype:
        return None
    if capabilities.cache_trimmable and all(attention(c) for c in prototype):
        return "trim"
    if all(attention(c) or isinstance(c, ArraysCache) for c in prototype):
        return "exact"
    return None


def full_history(caches: list) -> list:
    """A row's own prefill caches with each sliding-window layer a plain ``KVCache``: the
    model still reads only the window (its masks carry the window size), and every
    position stays, so a stored sequence can be cut at any length, as the batch KV keeps
    sliding layers (cache/rows.py)."""
    from mlx_lm.models.cache import KVCache, RotatingKVCache

    return [KVCache() if type(c) is RotatingKVCache else c for c in caches]


class EnginePrefixCache:
    def __init__(self, budget_bytes: int, exact: bool = False):
        self.store = PrefixCache(budget_bytes, exact=exact)
        self.exact = exact

    @staticmethod
    def eligible(request: GenerateRequest) -> bool:
        return key_tokens(request) is not None and request.prompt_logprobs is None

    def lookup(self, request: GenerateRequest) -> PrefixMatch | None:
        if not self.eligible(request) or len(request.prompt_tokens) < 2:
            return None
        return self.store.lookup(key_tokens(request), len(request.prompt_tokens) - 1)

    @staticmethod
    def key(request: GenerateRequest) -> list[int]:
        return key_tokens(request)

    def release(self, matches: list) -> None:
        for match in matches:
            self.store.release(match)

    def insert(self, tokens: list[int], computed: int, row: Any, pin: bool = False) -> bool:
        """Store a copy of a row's state: its first ``computed`` positions of ``tokens``
        (prompt + output key), or in exact mode every position its state holds;
        ``pin``: never evicted."""
        held = row_state(row) if row is not None else None
        if held is None:
            return False
        length, layers = held
        n = length if self.exact else computed
        if n < 1 or n > len(tokens) or length < n:
            return False
        payload = copy_state(layers, n)
        if not self.store.insert(tokens[:n], payload, state_bytes(payload), pin=pin):
            return False
        mx.async_eval(state_arrays(payload))  # own buffers, not the row's
        return True


def key_tokens(request: GenerateRequest) -> list[int] | None:
    """What the store keys a request's prompt on: its tokens, or for a media request the
    tokens with media content ids in place of the placeholders (None: not keyable)."""
    media = request.multimodal
    return request.prompt_tokens if media is None else media.key_tokens


# ---- a row's state: per layer (keys, values) views, or a list of SSM state arrays ---
def copy_state(layers: list, n: int) -> list:
    """Own copies of the first ``n`` positions (attention) and of the state arrays."""
    return [[mx.contiguous(a) if a is not None else None for a in layer]
            if isinstance(layer, list)
            else (mx.contiguous(layer[0][..., :n, :]), mx.contiguous(layer[1][..., :n, :]))
            for layer in layers]


def state_arrays(payload: list) -> list:
    return [a for layer in payload for a in layer if a is not None]


def state_bytes(payload: list) -> int:
    return sum(a.nbytes for a in state_arrays(payload))


def seed_caches(caches: list, match: PrefixMatch | None) -> None:
    """A row's fresh per-layer caches start with the matched positions (SSM layers with
    the entry's state: an exact-mode hit is always a whole entry)."""
    if match is None:
        return
    n = match.length
    for cache, layer in zip(caches, match.entry.payload):
        if isinstance(layer, list):
            cache.cache = list(layer)
            continue
        keys, values = layer
        cache.keys, cache.values = keys[..., :n, :], values[..., :n, :]
        cache.offset = n


def final_kv(row: Any, start: bool = True) -> tuple[int, list] | None:
    """A copy of a row's state in its batch (taken as it leaves, done decoding: the
    request finishes when its last token is read back, after the row left). ``start``:
    ``async_eval`` the copies now; rows leaving together pass False and start all their
    copies in one call."""
    if row.batch is None or not EnginePrefixCache.eligible(row.request):
        return None
    held = row_state(row)
    if held is None:
        return None
    length, layers = held
    copies = copy_state(layers, length)
    if start:
        mx.async_eval(state_arrays(copies))
    return length, copies


def row_state(row: Any) -> tuple[int, list] | None:
    """(positions held, per-layer state) of a row: the copy it kept when it left its
    batch, its own caches while prefilling alone, else its slot of its batch."""
    if row.final_kv is not None:
        return row.final_kv
    if row.cache is not None:
        attention = [c for c in row.cache if not _is_arrays(c)]
        if not attention or any(c.keys is None for c in attention):
            return None
        lengths = [c.offset for c in attention]
        return min(lengths), [list(c.cache) if _is_arrays(c) else (c.keys, c.values)
                              for c in row.cache]
    batch = row.batch
    if batch is None:
        return None
    rid = row.request.request_id
    slot = batch.slot(rid)
    return batch.length(rid), [
        [a[slot:slot + 1] if a is not None else None for a in layer.cache]
        if _is_arrays(layer) else (layer.keys[slot:slot + 1], layer.values[slot:slot + 1])
        for layer in batch.layers]


def _is_arrays(layer) -> bool:
    return isinstance(getattr(layer, "cache", None), list)


def seeded_length(row: Any) -> int:
    """Positions a row's own caches hold when every layer is attention KV (a prefix-cache
    hit's, or earlier chunks'); -1 when it has SSM layers (they join no seeded group)."""
    caches = row.cache
    if caches is None or any(_is_arrays(c) for c in caches):
        return -1
    return caches[0].offset if caches else 0


def seeded_batch(prototype: list, rows: list, starts: list[int]) -> Any:
    """A new batch of ``rows``, each starting with the first ``starts[i]`` positions of
    its own caches (the rest of its prompt is prefilled into it)."""
    from mlxserve.cache.batch_kv import BatchCache

    batch = BatchCache(prototype)
    for row, start in zip(rows, starts):
        batch.append(row.request.request_id, row.cache, start, mx.zeros((1,), mx.uint32))
    return batch
