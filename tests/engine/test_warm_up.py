"""Start-up warm-up of decode batch sizes: which sizes, and that it leaves nothing behind
(the first real requests get the greedy output of mlx-lm)."""

from __future__ import annotations

import logging

import pytest

from engine_support import collect, greedy, reference_model, run_with_engine, stream_generate_tokens
from mlx_lm.models.cache import make_prompt_cache

from mlxserve.config import EngineConfig
from mlxserve.engine.runner import Runner
from mlxserve.engine.scheduler import PrefillChunk, StepPlan
from mlxserve.engine.warm_up import batch_sizes, group_shapes, prefill_buckets, warm_up_groups


def test_batch_sizes_are_powers_of_two_up_to_the_cap():
    assert batch_sizes(64, 64) == [1, 2, 4, 8, 16, 32, 64]
    assert batch_sizes(48, 1024) == [1, 2, 4, 8, 16, 32, 48]
    assert batch_sizes(256, 5) == [1, 2, 4, 5]
    assert batch_sizes(64, 0) == []


def test_warm_up_batches_then_serve_as_before(tiny_dir, caplog):
    path = tiny_dir("llama")
    model, tok = reference_model(path)
    prompt = tok.encode("the cat sat on the mat and")
    config = EngineConfig(warmup_max_batch=8, max_num_seqs=8)

    async def body(engine):
        runner = engine._core.runner
        assert not runner.rows and not runner.batches  # warm-up left nothing
        return await collect(engine, greedy("a", prompt, 16))

    with caplog.at_level(logging.INFO, logger="mlxserve.engine.startup"):
        got = run_with_engine(path, body, config)
    assert got["tokens"] == stream_generate_tokens(model, tok, prompt, 16)
    assert "decode batch sizes [1, 2, 4, 8]" in caplog.text


@pytest.mark.parametrize("family", ["llama", "qwen3", "gemma3"])
def test_bucketed_prefill_keeps_greedy_outputs(tiny_dir, family, caplog):
    """Prefill forwards padded to bucket lengths (the padding trimmed off the caches), over
    several chunks and after a prefix-cache hit: the same greedy tokens as mlx-lm."""
    path = tiny_dir(family)
    model, tok = reference_model(path)
    first = tok.encode("once upon a time, in a land far away, there lived a tiny model that")
    second = first[:40] + tok.encode(" sang a song")
    config = EngineConfig(bucket_prefill=True, max_num_batched_tokens=40,
                          prefill_chunk_size=23, warmup_max_batch=2)

    async def body(engine):
        return [await collect(engine, greedy(rid, p, 12)) for rid, p in (("a", first),
                                                                         ("b", second))]

    with caplog.at_level(logging.INFO, logger="mlxserve.engine.startup"):
        got = run_with_engine(path, body, config)
    for result, prompt in zip(got, (first, second)):
        assert result["tokens"] == stream_generate_tokens(model, tok, prompt, 12)
    assert "prefill buckets [16, 32]" in caplog.text
    assert "prefill groups 0 of 0" in caplog.text  # warmed on CUDA only


def test_group_warm_up_leaves_nothing_behind(tiny_dir):
    """The (rows, width) group shapes a GPU warms at start-up (startup.py runs them on CUDA
    only), run here on a real runner: nothing stays behind, and the next request's greedy
    tokens are mlx-lm's."""
    path = tiny_dir("qwen3")
    model, tok = reference_model(path)
    prompt = tok.encode("the cat sat on the mat and")
    shapes = group_shapes(prefill_buckets(40), 64, 4)
    assert shapes == [(2, 16), (2, 32), (4, 16)]
    runner = Runner(model, model.args.vocab_size, lambda: make_prompt_cache(model))
    runner.bucket_prefill = True
    assert warm_up_groups(runner, shapes, deadline=float("inf")) == shapes
    assert not runner.rows and not runner.batches and not runner.joining
    runner.add(greedy("a", prompt, 8), seed=0)
    tokens = []
    plan = StepPlan(prefills=[PrefillChunk("a", 0, len(prompt), is_last=True)])
    while len(tokens) < 8:
        outputs, failures = runner.run(plan)
        assert not failures
        tokens += [o.token_id for o in outputs]
        plan = StepPlan(decodes=["a"])
    tokens += [o.token_id for o in runner.collect()[0]]
    assert tokens[:8] == stream_generate_tokens(model, tok, prompt, 8)
