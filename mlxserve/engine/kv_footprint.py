"""What one request's KV cache really holds, measured on the model (MLX, engine thread).

A two-token forward on fresh caches (``make_prompt_cache``) shows each layer's kind and
size: attention layers (``KVCache``, ``RotatingKVCache``) cost bytes per token: their
keys' and values' bytes over their columns (every one counts its full history, because the
batch KV keeps full history for sliding-window layers too); SSM / gated-delta layers
(``ArraysCache``) cost a constant per request: their state arrays. So a hybrid model is
not over-counted as all-attention, and a model with fewer KV heads in some layers is
counted as it is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import mlx.core as mx

from mlxserve.engine.model_step import forward

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KVFootprint:
    bytes_per_token: int  # attention layers, all of them
    bytes_per_request: int  # SSM layers' state, whatever the length

    def request_overhead_tokens(self) -> int:
        """The per-request constant in tokens of KV (what the scheduler counts in)."""
        return -(-self.bytes_per_request // max(1, self.bytes_per_token))


def _layer_bytes(cache) -> tuple[int, int]:
    """(bytes per token, bytes per request) of one layer cache after a forward."""
    arrays = getattr(cache, "cache", None)
    if isinstance(arrays, list):
        return 0, sum(a.nbytes for a in arrays if a is not None)
    keys, values = cache.keys, cache.values
    if keys is None or not isinstance(keys, mx.array):
        raise TypeError(f"cannot measure a {type(cache).__name__}")
    return (keys.nbytes + values.nbytes) // keys.shape[2], 0


def measure_footprint(model, make_cache) -> KVFootprint:
    caches = make_cache()
    forward(model, mx.array([[1, 2]], dtype=mx.uint32), caches)
    mx.eval([c.state for c in caches])
    sizes = [_layer_bytes(c) for c in caches]
    return KVFootprint(sum(t for t, _ in sizes), sum(r for _, r in sizes))


def footprint_or_none(model, make_cache) -> KVFootprint | None:
    """The measured footprint; None (the config's estimate is used) when the model cannot
    run on token ids alone or its caches are of another kind."""
    try:
        return measure_footprint(model, make_cache)
    except Exception:
        log.warning("measuring the KV footprint failed; estimating from the config",
                    exc_info=True)
        return None
