"""How many tokens of KV cache the engine may hold. Pure Python: no MLX import.

Bytes per token are measured on the model by the engine (engine/kv_footprint.py: attention
layers per token, SSM layers a constant per request); ``kv_bytes_per_token`` is the
fallback from the model config (every layer counted as full attention). The byte
budget is ``EngineConfig.kv_cache_memory_bytes`` when set, else a fraction of the memory
left on the device after the weights are loaded.
"""

from __future__ import annotations

import os

from mlxserve.config import EngineConfig

TOKENS_PER_SEQ = 256
MIN_SEQS, MAX_SEQS = 8, 1024
_DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


def _text_config(config: dict) -> dict:
    return config.get("text_config") or config


def kv_bytes_per_token(config: dict, dtype: str) -> int:
    text = _text_config(config)
    layers = int(text.get("num_hidden_layers") or text.get("n_layer") or 1)
    heads = int(text.get("num_attention_heads") or text.get("n_head") or 1)
    kv_heads = int(text.get("num_key_value_heads") or heads)
    head_dim = text.get("head_dim") or (int(text.get("hidden_size", 64)) // heads)
    return max(1, 2 * layers * kv_heads * int(head_dim) * _DTYPE_BYTES.get(dtype, 2))


def available_host_memory() -> int:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 8 << 30


def kv_budget_bytes(engine: EngineConfig, device_memory: int | None, weights_bytes: int) -> int:
    """The KV-cache byte budget: the configured one, or a fraction of what is free."""
    if engine.kv_cache_memory_bytes is not None:
        return engine.kv_cache_memory_bytes
    if device_memory is None:  # CPU: host memory that is free now (weights already loaded)
        free = available_host_memory()
    else:
        free = device_memory - weights_bytes
    return max(0, int(free * engine.kv_cache_memory_fraction))


def mlx_cache_limit(device_memory: int, weights_bytes: int, kv_budget: int) -> int:
    """Bytes of freed buffers MLX may keep for reuse on a GPU: half of what neither the
    weights nor the KV budget claim (at least 1 GiB). MLX's own default is its whole
    memory limit; a cache that fills the device (buffers of many sizes, e.g. prefill
    shapes) leaves CUDA's stream-ordered allocator failing with out-of-memory, and on any
    GPU takes what the KV budget was promised."""
    return max(1 << 30, (device_memory - weights_bytes - kv_budget) // 2)


def kv_tokens_total(engine: EngineConfig, config: dict, dtype: str,
                    device_memory: int | None, weights_bytes: int,
                    reserved_bytes: int = 0, bytes_per_token: int | None = None) -> int:
    """Tokens the scheduler may reserve: the budget less ``reserved_bytes`` (the prefix
    cache's share of the same memory); ``bytes_per_token`` as measured, else from the
    config."""
    per_token = bytes_per_token or kv_bytes_per_token(config, dtype)
    budget = kv_budget_bytes(engine, device_memory, weights_bytes) - reserved_bytes
    return max(1, budget // per_token)


def default_max_num_seqs(kv_tokens: int) -> int:
    """How many requests may run at once when not configured: as many as the KV budget
    holds at ``TOKENS_PER_SEQ`` tokens each, within [``MIN_SEQS``, ``MAX_SEQS``] (vLLM runs
    256 to 1024). With admission by use a request holds what it has, so the batch is
    bounded by memory (preemption) rather than by a fixed count."""
    return max(MIN_SEQS, min(MAX_SEQS, kv_tokens // TOKENS_PER_SEQ))
