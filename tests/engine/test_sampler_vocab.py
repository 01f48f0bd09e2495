"""The batched sampler at real vocabulary sizes (SmolLM2: 49152, Qwen2.5: 151936).

A defect that hits one token in 2^24 (the noise's uniform rounding to 1.0) never shows on
a 4-token vocabulary but picks a random token in ~1% of the steps at 151936. These tests
draw 512 to 1024 tokens per vocabulary and allow none outside what the parameters
permit (exact checks), plus a chi-square test of the sampled distribution.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from scipy import stats

from mlxserve.engine.request import SamplingParams
from mlxserve.engine.sampler import RowSampler, gumbel_noise, open_uniform, sample

VOCABS = {"smollm2": 49152, "qwen2.5": 151936}
BATCH = 128
STEPS = {49152: 8, 151936: 4}  # 1024 and 512 draws; the old defect hit 1 and 3 of them


def _steps(params: SamplingParams, vocab: int, logits_for_step):
    """Yield (logits (B, V) numpy, sampled tokens (B,)) for each step of one batch of
    BATCH seeded rows; each step is the rows' next output position."""
    rows = [RowSampler(params, [0], vocab, seed) for seed in range(BATCH)]
    for step in range(STEPS[vocab]):
        logits = logits_for_step(step)
        yield logits, np.array(sample(mx.array(logits), rows).tokens)


def _random_logits(vocab: int):
    rng = np.random.default_rng(vocab)
    return lambda step: (rng.standard_normal((BATCH, vocab)) * 3).astype(np.float32)


def test_uniform_stays_strictly_inside_zero_one_for_every_extreme_bit_pattern():
    edge = np.concatenate([np.arange(1 << 16), (1 << 32) - 1 - np.arange(1 << 16)])
    bits = mx.array(edge.astype(np.uint32))
    uniform = np.array(open_uniform(bits))
    assert uniform.min() > 0.0 and uniform.max() < 1.0
    noise = np.array(gumbel_noise(list(range(4)), 1 << 18))  # many random patterns too
    assert np.isfinite(noise).all()


@pytest.mark.parametrize("vocab", VOCABS.values(), ids=VOCABS.keys())
def test_top_k_one_samples_exactly_the_greedy_token(vocab):
    params = SamplingParams(temperature=1.0, top_k=1)
    draws = 0
    for logits, tokens in _steps(params, vocab, _random_logits(vocab)):
        np.testing.assert_array_equal(tokens, logits.argmax(axis=-1))
        draws += len(tokens)
    assert draws >= 512


def _top_p_allowed(logits: np.ndarray, top_p: float) -> np.ndarray:
    """Tokens the smallest set of mass >= top_p may hold (a little slack at its edge for
    float32 softmax): mass strictly before the token, in descending order, < top_p."""
    probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probs /= probs.sum(axis=-1, keepdims=True)
    order = np.argsort(-probs, axis=-1)
    desc = np.take_along_axis(probs, order, axis=-1)
    before = np.cumsum(desc, axis=-1) - desc
    allowed = np.zeros_like(probs, dtype=bool)
    np.put_along_axis(allowed, order, before < top_p + 1e-4, axis=-1)
    return allowed


def _min_p_allowed(logits: np.ndarray, min_p: float) -> np.ndarray:
    relative = np.exp(logits - logits.max(axis=-1, keepdims=True))  # p / p_max
    return relative >= min_p - 1e-4


def _top_k_allowed(logits: np.ndarray, k: int) -> np.ndarray:
    kth = -np.partition(-logits, k - 1, axis=-1)[:, k - 1 : k]
    return logits >= kth


# rows of one batch cycle through the three filters (per-row values in one batch)
FILTERS = [
    (SamplingParams(temperature=1.5, top_k=20), lambda x: _top_k_allowed(x, 20)),
    (SamplingParams(temperature=1.0, top_p=0.3), lambda x: _top_p_allowed(x, 0.3)),
    (SamplingParams(temperature=1.0, min_p=0.05), lambda x: _min_p_allowed(x, 0.05)),
]


def test_no_sampled_token_falls_outside_its_rows_filtered_set():
    """At SmolLM2's size only: a defect's chance per draw grows with the vocabulary as the
    cost of a draw does, and the top_p sort of Qwen's vocabulary is the slowest part."""
    vocab = VOCABS["smollm2"]
    rows = [RowSampler(FILTERS[seed % 3][0], [0], vocab, seed) for seed in range(BATCH)]
    logits_for_step, seen = _random_logits(vocab), set()
    for _ in range(STEPS[vocab] // 2):
        logits = logits_for_step(0)
        tokens = np.array(sample(mx.array(logits), rows).tokens)
        for kind, (_, allowed_of) in enumerate(FILTERS):
            mine = np.arange(kind, BATCH, 3)
            allowed = allowed_of(logits[mine])[np.arange(len(mine)), tokens[mine]]
            assert allowed.all(), f"{(~allowed).sum()} tokens outside {FILTERS[kind][0]}"
        seen.update(tokens.tolist())
    assert len(seen) > BATCH  # it does sample: not the argmax every time


HEAD_PROBS = np.array([0.3, 0.2, 0.15, 0.1, 0.1, 0.07, 0.05, 0.03])


def _head_logits(vocab: int):
    """Eight tokens spread over the vocabulary (the last id included) hold all the mass;
    every other token has logit -60 below them (total tail mass < 1e-20)."""
    head_ids = np.linspace(0, vocab - 1, len(HEAD_PROBS)).astype(np.int64)[::-1]
    row = np.full(vocab, -60.0, dtype=np.float32)
    row[head_ids] = np.log(HEAD_PROBS)
    return head_ids, lambda step: np.tile(row, (BATCH, 1))


@pytest.mark.parametrize("vocab,temperature", [(49152, 0.7), (151936, 1.0)],
                         ids=["smollm2-t0.7", "qwen2.5-t1"])
def test_sampled_frequencies_pass_a_chi_square_test(vocab, temperature):
    head_ids, logits_for_step = _head_logits(vocab)
    tokens = np.concatenate([t for _, t in _steps(SamplingParams(temperature=temperature),
                                                  vocab, logits_for_step)])
    in_head = np.isin(tokens, head_ids)
    assert in_head.all(), f"{(~in_head).sum()} draws of tokens with probability < 1e-20"
    counts = np.array([(tokens == t).sum() for t in head_ids])
    expected = HEAD_PROBS ** (1 / temperature)
    expected = expected / expected.sum() * len(tokens)
    assert stats.chisquare(counts, expected).pvalue > 1e-3, (counts, expected.round())
