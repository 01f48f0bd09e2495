"""The KV budget and MLX's buffer-cache limit derived from a device's memory."""

from mlxserve.config import EngineConfig
from mlxserve.engine.kv_budget import kv_budget_bytes, kv_tokens_total, mlx_cache_limit

GIB = 1 << 30
QWEN3_8B = dict(num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8,
                head_dim=128, hidden_size=4096)


def test_an_h200_with_an_8b_model_keeps_the_cache_beside_weights_and_kv():
    device, weights = 140 * GIB, 16 * GIB
    kv = kv_budget_bytes(EngineConfig(), device, weights)
    assert kv == (device - weights) // 2  # the default fraction, 0.5
    limit = mlx_cache_limit(device, weights, kv)
    assert weights + kv + limit < 0.95 * device  # under MLX's own memory limit
    assert limit == (device - weights - kv) // 2
    # 147,456 bytes per token of bf16 KV: ~450k tokens in the budget
    assert kv_tokens_total(EngineConfig(), QWEN3_8B, "bfloat16", device, weights) == \
        kv // (2 * 36 * 8 * 128 * 2)


def test_a_budget_that_takes_everything_still_leaves_one_gib_of_cache():
    device, weights = 24 * GIB, 20 * GIB
    assert mlx_cache_limit(device, weights, 8 * GIB) == GIB
    configured = EngineConfig(kv_cache_memory_bytes=3 * GIB)
    assert kv_budget_bytes(configured, device, weights) == 3 * GIB
    assert mlx_cache_limit(device, weights, 3 * GIB) == GIB


def test_start_up_sets_the_limit_it_computes_in_mlx():
    """What start-up does with a GPU's memory size, run against this MLX (the call also
    works on a CPU build): MLX's cache limit becomes ``mlx_cache_limit``."""
    import mlx.core as mx

    from mlxserve.engine.startup import _bound_mlx_cache

    original = mx.set_cache_limit(0)
    mx.set_cache_limit(original)
    device, config = 64 * GIB, EngineConfig(kv_cache_memory_bytes=20 * GIB)
    weights = mx.get_active_memory()
    _bound_mlx_cache(config, device)
    set_by_start_up = mx.set_cache_limit(original)  # returns the limit it replaces
    assert set_by_start_up == mlx_cache_limit(device, weights, 20 * GIB)


def test_device_memory_is_the_gpus_and_none_on_a_cpu():
    """Metal names it memory_size, CUDA total_memory: either is the GPU's; a CPU has none
    (its KV budget comes from free host memory)."""
    import mlx.core as mx

    from mlxserve.backend import device_memory, is_cpu_only

    got = device_memory()
    if is_cpu_only():
        assert got is None
    else:
        info = mx.device_info()
        assert got == (info.get("memory_size") or info.get("total_memory")) and got > 1 << 30
