"""Admission by use: a KV budget too small for every request's whole life makes the
scheduler preempt the newest running request; it resumes by recomputing its prompt and
output so far (through the prefix cache when the model has one). Nobody fails, and
greedy and seeded outputs are those of the request run alone."""

from __future__ import annotations

import asyncio

import pytest
from engine_support import collect, greedy, reference_model, run_with_engine, stream_generate_tokens

from mlxserve.config import EngineConfig
from mlxserve.engine.request import GenerateRequest, SamplingParams, StopParams

TEXTS = ["the cat sat on the mat and then", "once upon a time there lived a",
         "stream this: abcdefghij abcdefghij", "hello there, how are you", "one two three four",
         "a b c d e f g h i j k"]
OUT = 40


def _budget(engine) -> int:
    return engine.stats().kv_tokens_total


def _sampled(rid: str, prompt: list[int], seed: int) -> GenerateRequest:
    sampling = SamplingParams(temperature=0.9, top_k=20, seed=seed, frequency_penalty=0.5)
    return GenerateRequest(rid, list(prompt), sampling, StopParams(max_tokens=OUT,
                                                                    ignore_eos=True))


def _requests(prompts: list[list[int]]) -> list[GenerateRequest]:
    half = [greedy(f"g{k}", p, OUT) for k, p in enumerate(prompts)]
    return half + [_sampled(f"s{k}", p, 100 + k) for k, p in enumerate(prompts[:3])]


async def _all_at_once(engine, requests):
    return await asyncio.gather(*(collect(engine, r) for r in requests))


async def _one_by_one(engine, requests):
    return [await collect(engine, r) for r in requests]


@pytest.mark.parametrize("family,prefix", [("llama", True), ("llama", False),
                                           ("qwen3_next", False), ("gemma3", False)])
def test_preempted_requests_resume_with_the_same_output(tiny_dir, family, prefix):
    path = tiny_dir(family)
    model, tok = reference_model(path)
    prompts = [tok.encode(t) for t in TEXTS]
    requests = _requests(prompts)
    # ~190 tokens of KV for 9 requests that each end at ~70: only a few fit at once
    kv_bytes = 190 * _bytes_per_token(path) * (4 / 3 if prefix else 1)
    tight = EngineConfig(kv_cache_memory_bytes=int(kv_bytes), enable_prefix_caching=prefix,
                         max_num_batched_tokens=64, prefill_chunk_size=32)
    roomy = EngineConfig(enable_prefix_caching=False)

    async def crowded(engine):
        results = await _all_at_once(engine, requests)
        return results, engine.stats()

    results, stats = run_with_engine(path, crowded, tight)
    alone = run_with_engine(path, lambda e: _one_by_one(e, requests), roomy)
    assert stats.num_preemptions > 0, stats
    assert [r["finish"] for r in results] == ["length"] * len(requests)
    assert [r["tokens"] for r in results] == [r["tokens"] for r in alone]
    for k, p in enumerate(prompts):  # greedy ones also equal mlx-lm's
        assert results[k]["tokens"] == stream_generate_tokens(model, tok, p, OUT)
    assert stats.running == stats.waiting == stats.kv_tokens_used == 0
    if prefix:
        assert stats.prefix_cache_hits > 0  # resumed from their stored prefix


def _bytes_per_token(path: str) -> int:
    from mlx_lm.models.cache import make_prompt_cache

    from mlxserve.engine.kv_footprint import measure_footprint
    model, _ = reference_model(path)
    return measure_footprint(model, lambda: make_prompt_cache(model)).bytes_per_token
