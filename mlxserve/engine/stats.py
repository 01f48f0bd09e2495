"""What the engine reports: ``EngineStats``, the counters the core publishes after every
step as one immutable record, so other threads (the client, /metrics) read a consistent
snapshot without a lock."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EngineStats:
    running: int = 0
    waiting: int = 0
    total_finished: int = 0
    total_aborted: int = 0  # ended by an abort or a consumer that left (also counted above)
    total_generated_tokens: int = 0  # output tokens sampled, over all requests
    kv_tokens_used: int = 0
    kv_tokens_total: int = 0
    # prefix cache (vLLM's counters, in tokens: prompt tokens looked up / found cached)
    prefix_cache_queries: int = 0
    prefix_cache_hits: int = 0
    prefix_cache: dict | None = None  # the store's PrefixCacheStats; None when off
    num_preemptions: int = 0  # running requests sent back to the queue (memory was short)
    max_num_seqs: int = 0  # most requests running at once (configured or from the budget)
    specprefill_requests: int = 0  # prompts prefilled sparsely (SpecPrefill)
    specprefill_tokens_skipped: int = 0  # prompt tokens those prefills did not compute
    # speculative decoding (engine/speculation.py; vLLM's names), totals of the one method
    spec_decode_num_drafts: int = 0
    spec_decode_num_draft_tokens: int = 0
    spec_decode_num_accepted_tokens: int = 0
    spec_decode_mean_accepted_length: float = 0.0
    spec_decode: dict | None = None  # {method: counters}; None when off
    # MLX's allocator: bytes in live arrays, and freed buffers it keeps for reuse
    mlx_active_bytes: int = 0
    mlx_cache_bytes: int = 0


def mlx_memory() -> dict:
    import mlx.core as mx

    return dict(mlx_active_bytes=mx.get_active_memory(), mlx_cache_bytes=mx.get_cache_memory())


def prefix_stats(prefix) -> dict:
    """The prefix cache's share of the stats (none when the cache is off)."""
    if prefix is None:
        return {}
    stats = prefix.store.stats()
    return dict(prefix_cache_queries=stats.tokens_queried,
                prefix_cache_hits=stats.tokens_saved, prefix_cache=stats.as_dict())
