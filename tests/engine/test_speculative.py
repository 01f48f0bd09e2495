"""Speculative decoding in the engine: greedy output with speculation equals output
without, for a trimmable (qwen3), a sliding-window (gemma3) and a hybrid SSM (qwen3_next)
tiny model, in mixed batches (rows joining and leaving, one opting out); and the
rejection rule keeps the target's sampling distribution."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import mlx.core as mx
import numpy as np
import pytest
import spec_support
from engine_support import collect, greedy, run_with_engine

from mlxserve.config import EngineConfig, SpeculativeConfig
from mlxserve.engine.acceptance import accept
from mlxserve.engine.penalties import PenaltyTable
from mlxserve.engine.request import GenerateRequest, SamplingParams, StopParams
from mlxserve.engine.sampler import RowSampler
from mlxserve.spec import registry

PROMPTS = [[5, 6, 7, 8, 9, 10, 5, 6, 7, 8, 9], [11, 12, 13, 14, 11, 12],
           [20, 21, 22, 23, 24, 25, 26, 20, 21], [30, 31, 32]]
LENGTHS = [24, 9, 30, 12]  # past gemma3's window of 16; rows leave at different steps


def _run(path: str, speculative: SpeculativeConfig | None, opt_out: int = -1):
    async def body(engine):
        async def one(i):
            await asyncio.sleep(0.2 * i)  # staggered: rows join a running batch
            request = replace(greedy(f"r{i}", PROMPTS[i], LENGTHS[i]),
                              speculative=i != opt_out)
            return (await collect(engine, request))["tokens"]

        tokens = await asyncio.gather(*[one(i) for i in range(len(PROMPTS))])
        return tokens, engine.stats()

    return run_with_engine(path, body, EngineConfig(speculative=speculative))


@pytest.mark.parametrize("family", ["qwen3", "gemma3", "qwen3_next"])
def test_greedy_equal_with_and_without_speculation(tiny_dir, family, monkeypatch):
    path = tiny_dir(family)
    plain, _ = _run(path, None)
    spec_support.REFERENCES.update({tuple(p): t for p, t in zip(PROMPTS, plain)})
    monkeypatch.setitem(registry.METHODS, "oracle",
                        registry.Method("spec_support:make_oracle_proposer", frozenset()))
    config = SpeculativeConfig("oracle", 4, options={"adaptive": False})
    speculated, stats = _run(path, config, opt_out=1)
    assert speculated == plain
    counters = stats.spec_decode["oracle"]
    # proposals were kept and rejected at many offsets (the oracle corrupts some)
    assert 0 < counters["num_accepted_tokens"] < counters["num_draft_tokens"]
    assert stats.spec_decode_mean_accepted_length > 1.5


def test_proposers_that_need_hidden_states_get_them(tiny_dir, monkeypatch):
    path = tiny_dir("qwen3")
    plain, _ = _run(path, None)
    spec_support.REFERENCES.update({tuple(p): t for p, t in zip(PROMPTS, plain)})
    monkeypatch.setitem(registry.METHODS, "oracle",
                        registry.Method("spec_support:make_oracle_proposer", frozenset()))
    spec_support.HiddenOracleProposer.seen.clear()
    config = SpeculativeConfig("oracle", 3, options={"adaptive": False, "hidden": True})
    speculated, _ = _run(path, config)
    assert speculated == plain  # the hidden-state forward gives the same logits
    seen = spec_support.HiddenOracleProposer.seen
    hidden_size = 64  # tests/tiny_models.py
    # right after prefill a row has none; after each decode or verify it has one
    assert seen.count((hidden_size,)) >= len(seen) - len(PROMPTS) > 0


VOCAB = 12


def _samplers(params: SamplingParams, count: int, table=None) -> list[RowSampler]:
    return [RowSampler(params, [1, 2], VOCAB, seed, table) for seed in range(count)]


def _target(logits: np.ndarray, params: SamplingParams, seen: list[int] = ()) -> np.ndarray:
    """The distribution plain sampling draws from, computed here with numpy."""
    x = logits.astype(np.float64).copy()
    for t in seen:  # repetition penalty over prompt + output
        x[t] = x[t] / params.repetition_penalty if x[t] > 0 else x[t] * params.repetition_penalty
    x = (x - x.max()) / params.temperature
    if params.top_k:
        x[np.argsort(-x)[params.top_k:]] = -np.inf
    p = np.exp(x - x.max())
    return p / p.sum()


@pytest.mark.parametrize("params, probs", [
    (SamplingParams(temperature=0.9, top_k=6, seed=0), False),
    (SamplingParams(temperature=1.3, repetition_penalty=1.5, seed=0), False),
    (SamplingParams(temperature=1.0, seed=0), True),
])
def test_speculative_sampling_keeps_the_target_distribution(params, probs):
    """Many seeds, one verify each of 2 proposals: the first output token follows the
    target's p0 and, after the first proposal is kept, the second follows p1."""
    count, width = 6000, 3
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 1.5, (width, VOCAB)).astype(np.float32)
    drafts = [int(np.argmax(logits[0])), int(np.argsort(-logits[1])[1])]  # likely / less
    table = PenaltyTable(VOCAB, slots=count) if params.repetition_penalty != 1.0 else None
    rows = _samplers(params, count, table)
    q = None
    if probs:  # a draft distribution, draws from it as proposals
        q_dist = rng.dirichlet(np.ones(VOCAB), size=2).astype(np.float32)
        q = [mx.array(q_dist)] * count
        pick = [[rng.choice(VOCAB, p=q_dist[j] / q_dist[j].sum()) for j in range(2)]
                for _ in range(count)]
    else:
        pick = [drafts] * count
    result = accept(mx.broadcast_to(mx.array(logits), (count, width, VOCAB)), rows,
                    [list(map(int, d)) for d in pick], q)
    tokens, kept = np.array(result.tokens), np.array(result.kept)
    p0 = _target(logits[0], params, seen=[1, 2])
    _assert_follows(tokens[:, 0], p0, count)
    first = np.array([d[0] for d in pick])
    cond = tokens[(kept >= 2) & (tokens[:, 0] == first) & (first == first[0])]
    p1 = _target(logits[1], params, seen=[1, 2, int(first[0])])
    _assert_follows(cond[:, 1], p1, len(cond))


def _assert_follows(samples: np.ndarray, p: np.ndarray, n: int) -> None:
    assert n > 300
    freq = np.bincount(samples, minlength=VOCAB) / n
    sigma = np.sqrt(p * (1 - p) / n) + 1e-3
    assert np.all(np.abs(freq - p) < 5 * sigma), (freq.round(3), p.round(3))


def _sampled_run(path: str, speculative, seeds: range, **params):
    async def body(engine):
        async def one(seed):
            request = GenerateRequest(f"s{seed}", list(PROMPTS[0]),
                                      SamplingParams(seed=seed, **params),
                                      StopParams(max_tokens=4, ignore_eos=True))
            out = await collect(engine, request)
            logprobs = [lp for d in out["deltas"] for lp in (d.logprobs or [])]
            return out["tokens"], len(logprobs)

        return await asyncio.gather(*[one(s) for s in seeds])

    return run_with_engine(path, body, EngineConfig(speculative=speculative))


def test_sampled_rows_through_the_engine_keep_the_target_distribution(tiny_dir, monkeypatch):
    """Seeded sampled requests (penalties, top_p, logprobs) with proposals on every step:
    a seed repeats itself, every token has its logprob, and the tokens the verify steps
    chose (positions 2..4) are distributed as without speculation."""
    path = tiny_dir("qwen3")
    plain_ref, _ = _run(path, None)
    spec_support.REFERENCES.update({tuple(p): t for p, t in zip(PROMPTS, plain_ref)})
    monkeypatch.setitem(registry.METHODS, "oracle",
                        registry.Method("spec_support:make_oracle_proposer", frozenset()))
    config = SpeculativeConfig("oracle", 3, options={"adaptive": False})
    params = dict(temperature=1.0, top_p=0.95, repetition_penalty=1.1, logprobs=True)
    seeds = range(240)
    plain = _sampled_run(path, None, seeds, **params)
    spec = _sampled_run(path, config, seeds, **params)
    again = _sampled_run(path, config, range(8), **params)
    assert [t for t, _ in again] == [t for t, _ in spec[:8]]  # seeds keep working
    assert all(n == len(t) == 4 for t, n in spec)
    for position in (1, 2, 3):
        a = [t[position] for t, _ in plain]
        b = [t[position] for t, _ in spec]
        assert _total_variation(a, b) < 0.15, position


def _total_variation(a: list[int], b: list[int]) -> float:
    keys = set(a) | set(b)
    return 0.5 * sum(abs(a.count(k) / len(a) - b.count(k) / len(b)) for k in keys)


def test_verify_steps_through_the_few_query_attention_stay_greedy_equal(tiny_dir, monkeypatch):
    """cache/short_query in the engine, through row_attention's own router installed as on
    CUDA (this CPU has no decode kernel to route to; the tiny batch never asks for it):
    greedy output is unchanged."""
    from mlxserve.cache import row_attention, short_query

    path = tiny_dir("qwen3")
    plain, _ = _run(path, None)
    spec_support.REFERENCES.update({tuple(p): t for p, t in zip(PROMPTS, plain)})
    monkeypatch.setitem(registry.METHODS, "oracle",
                        registry.Method("spec_support:make_oracle_proposer", frozenset()))
    routed, few_query = [], short_query.attention

    def counted(q, k, v, scale, mask):
        routed.append(q.shape[2])
        return few_query(q, k, v, scale, mask)

    monkeypatch.setattr(short_query, "attention", counted)
    monkeypatch.setattr(mx.fast, "scaled_dot_product_attention",
                        mx.fast.scaled_dot_product_attention)  # restored after the test
    monkeypatch.setattr(row_attention, "_original", None)
    monkeypatch.setattr(row_attention, "available", lambda: True)
    assert row_attention.install()
    speculated, _ = _run(path, SpeculativeConfig("oracle", 4, options={"adaptive": False}))
    assert speculated == plain
    assert 5 in routed  # the verify steps (W = k + 1) went through it, and short prefills
