"""A 1,000-request soak on a tiny model: the process memory does not grow."""

from __future__ import annotations

import asyncio
import random

import pytest
from engine_support import collect, reference_model, run_with_engine

from mlxserve.config import EngineConfig
from mlxserve.engine.request import GenerateRequest, SamplingParams, StopParams

WARM_UP = 200
TOTAL = 1000
CONCURRENCY = 32
RSS_TOLERANCE_MB = 40


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


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
        before = _rss_mb()
        await asyncio.gather(*(one(r) for r in requests[WARM_UP:]))
        after = _rss_mb()
        print(f"RSS after warm-up {before:.1f} MB, after {TOTAL} requests {after:.1f} MB")
        return finishes, before, after, engine.stats()

    config = EngineConfig(max_num_seqs=CONCURRENCY, max_num_batched_tokens=256,
                          prefill_chunk_size=32)
    finishes, before, after, stats = run_with_engine(path, body, config)
    assert len(finishes) == TOTAL and set(finishes) <= {"stop", "length"}
    assert stats.total_finished == TOTAL and stats.running == 0 and stats.kv_tokens_used == 0
    assert after - before < RSS_TOLERANCE_MB, f"RSS grew from {before:.0f} to {after:.0f} MB"
