"""The engine's start-up, run once on its thread before the loop: load the model, size the
KV budget and the scheduler from the device's memory, build the runner, the prefix cache,
speculation and SpecPrefill, and compile the batch paths (warm-up).

Apart from core.py, which owns the loop: these functions run once and hand back their
parts (``EngineParts``); the core wires them to its request tables (which prefix a
waiting request hits, which prompt prefills sparsely). MLX and the model code are
imported inside the functions, so importing the engine package stays light.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from mlxserve.config import EngineConfig, ModelConfig
from mlxserve.engine.scheduler import Scheduler

if TYPE_CHECKING:  # built here, imported lazily below
    from mlxserve.engine.prefix import EnginePrefixCache
    from mlxserve.engine.runner import Runner
    from mlxserve.engine.specprefill import EngineSpecPrefill
    from mlxserve.engine.speculation import Speculation

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineParts:
    """What start-up built: the core takes these over as its own attributes."""

    loaded: Any  # models.LoadedModel
    max_model_len: int
    scheduler: Scheduler
    runner: Runner
    prefix: EnginePrefixCache | None  # None: off, or a model kind it does not serve yet
    speculation: Speculation | None  # None without --speculative-config
    specprefill: EngineSpecPrefill  # its scorer is None without a draft


def build_engine(model_config: ModelConfig, cfg: EngineConfig,
                 loader: Callable | None = None) -> EngineParts:
    """Load the model and build what serves it, each part after what it needs: the prefix
    cache's reserve comes off the KV budget, which sizes the scheduler and the runner."""
    from mlxserve import backend
    from mlxserve.models import load_model

    loaded = (loader or load_model)(model_config)
    caps = loaded.capabilities
    max_model_len = min(cfg.max_model_len or caps.context_length, caps.context_length)
    device_memory = backend.device_memory()
    if device_memory:
        _bound_mlx_cache(cfg, device_memory)
        _route_row_attention()
    prefix = prefix_cache(cfg, caps, loaded.model, device_memory)
    scheduler, runner = _scheduler_and_runner(cfg, loaded, device_memory, prefix)
    if cfg.warmup:
        warm_up_engine(cfg, scheduler, runner)
    speculation = _speculation(cfg, loaded, model_config, runner)
    if prefix is not None:
        _keep_row_kv(runner, loaded.model)
    specprefill = load_specprefill(cfg, model_config, loaded, runner, loader)
    return EngineParts(loaded, max_model_len, scheduler, runner, prefix, speculation,
                       specprefill)


def _bound_mlx_cache(cfg: EngineConfig, device_memory: int) -> None:
    """MLX's buffer cache may keep at most half the memory left beside the weights and
    the KV budget (engine/kv_budget.py mlx_cache_limit)."""
    import mlx.core as mx

    from mlxserve.engine.kv_budget import kv_budget_bytes, mlx_cache_limit

    weights = mx.get_active_memory()
    limit = mlx_cache_limit(device_memory, weights,
                            kv_budget_bytes(cfg, device_memory, weights))
    mx.set_cache_limit(limit)
    log.info("MLX buffer cache limited to %.1f GiB", limit / 2 ** 30)


def _route_row_attention() -> None:
    """On a CUDA GPU, one-token attention through a per-row mask (rows at different
    lengths) runs on the engine's kernel (cache/row_attention.py), unless
    MLXSERVE_ROW_ATTENTION=0."""
    from mlxserve.cache import row_attention

    if os.environ.get("MLXSERVE_ROW_ATTENTION", "1") != "0" and row_attention.install():
        log.info("masked one-token attention runs on the engine's CUDA kernel")


def _scheduler_and_runner(cfg: EngineConfig, loaded, device_memory: int | None,
                          prefix) -> tuple[Scheduler, Runner]:
    """Both sized by the KV tokens that fit in what the weights and the prefix cache leave
    (measured per token on fresh caches where the model allows)."""
    import mlx.core as mx

    from mlxserve.engine.kv_budget import default_max_num_seqs, kv_tokens_total
    from mlxserve.engine.kv_footprint import footprint_or_none
    from mlxserve.engine.runner import Runner

    model, caps = loaded.model, loaded.capabilities
    reserved = prefix.store.budget_bytes if prefix is not None else 0
    footprint = footprint_or_none(model, lambda: make_cache(model))
    total = kv_tokens_total(cfg, loaded.config, caps.dtype, device_memory,
                            mx.get_active_memory(), reserved_bytes=reserved,
                            bytes_per_token=footprint and footprint.bytes_per_token)
    scheduler = Scheduler(
        max_num_seqs=cfg.max_num_seqs or default_max_num_seqs(total),
        max_num_batched_tokens=cfg.token_budget(cpu_only()),
        prefill_chunk_size=cfg.prefill_chunk_size, kv_tokens_total=total,
        max_queue_size=cfg.max_queue_size,
        seq_overhead_tokens=footprint.request_overhead_tokens() if footprint else 0,
    )
    runner = Runner(model, caps.vocab_size or loaded.config.get("vocab_size"),
                    lambda: make_cache(model), merge_floor_tokens=max(1, total // 8))
    runner.bucket_prefill = not cpu_only() if cfg.bucket_prefill is None else cfg.bucket_prefill
    return scheduler, runner


def _speculation(cfg: EngineConfig, loaded, model_config: ModelConfig, runner):
    """The configured proposer; the runner then keeps last hidden states if it reads them."""
    from mlxserve.engine.speculation import build_speculation

    speculation = build_speculation(cfg.speculative, loaded, model_config)
    if speculation is not None:
        runner.want_hidden = bool(speculation.proposer.needs_hidden)
    return speculation


def _keep_row_kv(runner, model) -> None:
    """With a prefix cache: rows keep their final KV, in caches holding full history (a
    finished row's KV is what the cache stores)."""
    from mlxserve.engine.prefix import full_history

    runner.keep_final_kv = True
    runner.make_row_cache = lambda: full_history(make_cache(model))


def warm_up_engine(cfg: EngineConfig, scheduler: Scheduler, runner) -> None:
    """Compile the batch paths' kernels now, not while the first requests wait."""
    from mlxserve.backend import is_cuda
    from mlxserve.engine.warm_up import (batch_sizes, group_shapes, prefill_buckets,
                                         warm_up_batches, warm_up_groups, warm_up_prefills)

    started = time.monotonic()
    largest = cfg.warmup_max_batch
    if largest is None:
        largest = 0 if cpu_only() else scheduler.max_num_seqs
    try:
        runner.warm_up()
        sizes = warm_up_batches(runner, batch_sizes(scheduler.max_num_seqs, largest),
                                cfg.warmup_timeout_s)
        buckets, shapes, groups = [], [], []
        if runner.bucket_prefill:
            deadline = started + cfg.warmup_timeout_s
            buckets = warm_up_prefills(runner, prefill_buckets(cfg.prefill_chunk_size), deadline)
            # CUDA builds each new prefill shape's attention on first use (~50-90 ms on
            # the H200); on Metal that cost is unmeasured, and ~130k warm-up tokens would
            # take a Mac minutes of start-up
            shapes = group_shapes(buckets, scheduler.max_num_batched_tokens,
                                  scheduler.max_num_seqs) if is_cuda() else []
            groups = warm_up_groups(runner, shapes, deadline)
    except Exception:  # e.g. a model whose forward needs more than token ids
        log.warning("engine warm-up failed; batch paths compile on first use", exc_info=True)
        return
    log.info("engine warm-up took %.1f s (decode batch sizes %s, prefill buckets %s, "
             "prefill groups %d of %d)", time.monotonic() - started, sizes or "none",
             buckets or "none", len(groups), len(shapes))


def load_specprefill(cfg: EngineConfig, model_config: ModelConfig, loaded, runner,
                     loader: Callable | None) -> EngineSpecPrefill:
    """SpecPrefill's draft scorer (when configured), handed to the runner that runs it."""
    from mlxserve.engine.specprefill import EngineSpecPrefill

    specprefill = EngineSpecPrefill.load(cfg, model_config, loaded, runner.prototype, loader)
    runner.scorer = specprefill.scorer
    runner.selection = specprefill.selection
    return specprefill


def prefix_cache(cfg: EngineConfig, caps, model, device_memory: int | None):
    """The engine's prefix cache, or None (off, or a model kind it does not serve yet)."""
    import mlx.core as mx

    from mlxserve.engine.kv_budget import kv_budget_bytes
    from mlxserve.engine.prefix import EnginePrefixCache, prefix_budget_bytes, prefix_cache_mode

    mode = prefix_cache_mode(caps, make_cache(model)) if cfg.enable_prefix_caching else None
    if mode is None:
        return None
    kv_bytes = kv_budget_bytes(cfg, device_memory, mx.get_active_memory())
    budget = prefix_budget_bytes(cfg.prefix_cache_memory_bytes, kv_bytes)
    return EnginePrefixCache(budget, exact=mode == "exact") if budget > 0 else None


def make_cache(model) -> list:
    from mlx_lm.models.cache import make_prompt_cache

    return make_prompt_cache(model)


def cpu_only() -> bool:
    from mlxserve.backend import is_cpu_only

    return is_cpu_only()
