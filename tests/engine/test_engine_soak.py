"""A 1,000-request soak on a tiny model: the process memory does not grow.

RSS alone only shows KV-sized leaks; the Python objects mlxserve allocates (traced) and
MLX's active memory are checked to the byte range a per-request leak would exceed."""

from __future__ import annotations

import asyncio
import gc
import os
import random
import tracemalloc

import mlx.core as mx
import mlxserve

import pytest
from engine_support import collect, reference_model, run_with_engine

from mlxserve.config import EngineConfig
from mlxserve.engine.request import GenerateRequest, SamplingParams, StopParams

WARM_UP = 200
TOTAL = 1000
CONCURRENCY = 32
RSS_TOLERANCE_MB = 40
FRAMES = 12  # traceback depth kept by tracemalloc: deep enough to reach a mlxserve frame
MLX_STATE_TOLERANCE_B = 16 * 1024
HEAP_TOLERANCE_B = 32 * 1024  # 40 bytes per request: a leaked object per request shows


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _engine_heap() -> int:
    """Bytes of live Python objects allocated with a mlxserve frame on the stack (the test's
    own task and result objects left out)."""
    package = tracemalloc.Filter(True, f"{os.path.dirname(mlxserve.__file__)}/*", all_frames=True)
    traces = tracemalloc.take_snapshot().filter_traces([package])
    return sum(stat.size for stat in traces.statistics("filename"))


def _request(k: int, vocab: int, rng: random.Random) -> GenerateRequest:
    prompt = [rng.randrange(vocab - 3) for _ in range(rng.randint(2, 40))]
    sampling = SamplingParams(temperature=rng.choice([0.0, 0.8]), top_p=rng.choice([1.0, 0.9]),
                              logprobs=k % 7 == 0, top_logprobs=2 if k % 7 == 0 else 0)
    return GenerateRequest(f"soak-{k}", prompt, sampling,
                           StopParams(max_tokens=rng.randint(1, 12), stop=("xy",)))


@pytest.mark.slow
def test_thousand_requests_do_not_grow_memory(tiny_dir):
    path = tiny_dir("qwen2")
    _, tok = reference_model(path)
    vocab = tok.vocab_size if hasattr(tok, "vocab_size") else 270
    rng = random.Random(0)
    requests = [_request(k, vocab, rng) for k in range(TOTAL)]

    async def body(engine):
        gate = asyncio.Semaphore(CONCURRENCY)
        finishes: list[str] = []

        async def one(req):
            async with gate:
                finishes.append((await collect(engine, req))["finish"])

        await asyncio.gather(*(one(r) for r in requests[:WARM_UP]))
        await engine.clear_prefix_cache()  # a cache holds entries by design: measure without
        tracemalloc.start(FRAMES)
        before = _rss_mb(), _engine_heap(), mx.get_active_memory()
        await asyncio.gather(*(one(r) for r in requests[WARM_UP:]))
        dropped = await engine.clear_prefix_cache()
        gc.collect()
        after = _rss_mb(), _engine_heap(), mx.get_active_memory()
        tracemalloc.stop()
        print(f"after warm-up / after {TOTAL} requests: RSS {before[0]:.1f} / {after[0]:.1f} MB,"
              f" mlxserve's Python heap {before[1]} / {after[1]} B,"
              f" MLX active memory {before[2]} / {after[2]} B")
        return finishes, before, after, engine.stats(), dropped

    config = EngineConfig(max_num_seqs=CONCURRENCY, max_num_batched_tokens=256,
                          prefill_chunk_size=32)
    finishes, before, after, stats, dropped = run_with_engine(path, body, config)
    assert dropped > 0  # the prefix cache ran (and its entries are freed: MLX memory below)
    assert len(finishes) == TOTAL and set(finishes) <= {"stop", "length"}
    assert stats.total_finished == TOTAL and stats.running == 0 and stats.kv_tokens_used == 0
    assert after[0] - before[0] < RSS_TOLERANCE_MB, f"RSS grew from {before[0]:.0f} MB"
    assert after[1] - before[1] < HEAP_TOLERANCE_B, "mlxserve keeps Python objects per request"
    # A leak per request would be ~1,000 requests' worth; the runner keeps the last batch
    # membership's sampling-parameter arrays (a few hundred bytes) until the next one.
    assert after[2] - before[2] <= MLX_STATE_TOLERANCE_B, "MLX arrays outlive their requests"
