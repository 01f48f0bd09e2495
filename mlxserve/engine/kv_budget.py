"""How many tokens of KV cache the engine may hold. Pure Python: no MLX import.

Bytes per token come from the model config (an upper bound: every layer is counted as a
full-attention layer, which over-reserves for sliding-window and hybrid models). The byte
budget is ``EngineConfig.kv_cache_memory_bytes`` when set, else a fraction of the memory
left on the device after the weights are loaded.
"""

from __future__ import annotations

import os

from mlxserve.config import EngineConfig

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


def kv_tokens_total(engine: EngineConfig, config: dict, dtype: str,
                    device_memory: int | None, weights_bytes: int,
                    reserved_bytes: int = 0) -> int:
    """Tokens the scheduler may reserve: the budget less ``reserved_bytes`` (the prefix
    cache's share of the same memory)."""
    per_token = kv_bytes_per_token(config, dtype)
    budget = kv_budget_bytes(engine, device_memory, weights_bytes) - reserved_bytes
    return max(1, budget // per_token)
