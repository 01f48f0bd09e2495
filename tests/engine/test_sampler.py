"""The batched sampler on known distributions (real MLX, no model)."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from mlxserve.engine.request import SamplingParams
from mlxserve.engine.sampler import RowSampler, sample

PROBS = np.array([0.5, 0.3, 0.15, 0.05])
ROWS = 4000


def _frequencies(params: SamplingParams, probs=PROBS) -> np.ndarray:
    rows = [RowSampler(params, [0], len(probs), seed) for seed in range(ROWS)]
    logits = mx.array(np.tile(np.log(probs), (ROWS, 1)).astype(np.float32))
    tokens = np.array(sample(logits, rows).tokens)
    return np.bincount(tokens, minlength=len(probs)) / ROWS


def test_temperature_one_samples_the_softmax():
    assert np.abs(_frequencies(SamplingParams(temperature=1.0)) - PROBS).max() < 0.03


def test_temperature_sharpens_the_distribution():
    expected = PROBS ** 2 / (PROBS ** 2).sum()  # temperature 0.5 squares the probabilities
    assert np.abs(_frequencies(SamplingParams(temperature=0.5)) - expected).max() < 0.03


def test_top_k_top_p_and_min_p_cut_the_tail():
    assert _frequencies(SamplingParams(top_k=2))[2:].sum() == 0
    freq = _frequencies(SamplingParams(top_p=0.7))  # 0.5 + 0.3 reach 0.7: two tokens left
    assert freq[2:].sum() == 0 and abs(freq[0] - 0.5 / 0.8) < 0.03
    assert _frequencies(SamplingParams(min_p=0.4))[2:].sum() == 0  # 0.15 < 0.4 * 0.5


def test_greedy_rows_stay_argmax_next_to_sampled_rows():
    logits = mx.array(np.tile(np.log(PROBS), (64, 1)).astype(np.float32))
    rows = [RowSampler(SamplingParams(temperature=0.0 if k % 2 else 1.5), [0], 4, k)
            for k in range(64)]
    tokens = np.array(sample(logits, rows).tokens)
    assert (tokens[1::2] == 0).all()
    assert len(set(tokens[0::2].tolist())) > 1


def test_a_row_draws_the_same_tokens_in_any_batch():
    logits_row = np.log(PROBS).astype(np.float32)
    alone_row = RowSampler(SamplingParams(temperature=1.0, seed=5), [0], 4, 5)
    target = RowSampler(SamplingParams(temperature=1.0, seed=5), [0], 4, 5)
    mates = [RowSampler(SamplingParams(temperature=1.0, top_k=k % 3), [0], 4, s)
             for s, k in zip(range(7), range(7))]
    alone, batched = [], []
    for _ in range(30):  # successive positions of the same request
        alone.append(int(np.array(sample(mx.array(logits_row[None]), [alone_row]).tokens)[0]))
        out = sample(mx.array(np.tile(logits_row, (8, 1))), mates[:3] + [target] + mates[3:])
        batched.append(int(np.array(out.tokens)[3]))
    assert alone == batched
    assert len(set(alone)) > 1


def test_tiny_positive_temperatures_sample_the_greedy_token():
    """logits / 1e-38 overflows float32 (and 5e-324 is 0 in float32): such temperatures must
    still give the argmax, never the first token whose scaled logit became +inf."""
    rng = np.random.default_rng(3)
    logits = mx.array((rng.standard_normal((16, 512)) * 4 + 10).astype(np.float32))
    for temperature in (1e-38, 1e-45, 5e-324, 1e-7):
        rows = [RowSampler(SamplingParams(temperature=temperature), [0], 512, s)
                for s in range(16)]
        tokens = np.array(sample(logits, rows).tokens)
        np.testing.assert_array_equal(tokens, np.array(logits).argmax(axis=-1))


def _openai_penalised(logits: np.ndarray, counts: np.ndarray, frequency: float,
                      presence: float) -> np.ndarray:
    """OpenAI's definition: mu[j] - c[j] * frequency - (c[j] > 0) * presence, with c[j]
    the times token j was generated so far (prompt tokens do not count)."""
    return logits - counts * frequency - (counts > 0) * presence


@pytest.mark.parametrize("frequency,presence", [(0.6, 0.0), (0.0, 1.2), (0.4, 0.3),
                                                (-0.5, 0.0), (0.0, -2.0), (2.0, 2.0)])
def test_frequency_and_presence_penalties_follow_openai_on_known_counts(frequency, presence):
    logits = np.array([5.0, 4.13, 3.57, 3.31, 0.0, -1.0], dtype=np.float32)  # no ties
    params = SamplingParams(temperature=0.0, frequency_penalty=frequency,
                            presence_penalty=presence)
    row = RowSampler(params, [0, 0, 1, 1, 1], len(logits), 0)  # prompt counts for nothing
    counts, picked, expected = np.zeros(len(logits)), [], []
    for _ in range(12):
        expected.append(int(np.argmax(_openai_penalised(logits, counts, frequency, presence))))
        picked.append(int(np.array(sample(mx.array(logits[None]), [row]).tokens)[0]))
        counts[picked[-1]] += 1
    assert picked == expected
    if frequency > 0 or presence > 0:
        assert len(set(picked)) > 1  # the penalty moved greedy off its favourite


def test_repetition_penalty_scales_prompt_and_output_tokens_by_sign():
    """HF's rule, over prompt and output: a seen token's positive logit is divided by the
    penalty, a negative one multiplied (so both become less likely)."""
    for logits in ([3.5, 4.0, 1.0, -2.0], [-1.0, -0.8, -3.0, -2.5]):
        logits = np.array(logits, dtype=np.float32)
        row = RowSampler(SamplingParams(temperature=0.0, repetition_penalty=2.0), [1], 4, 0)
        seen, picked, expected = {1}, [], []
        for _ in range(4):
            mask = np.isin(np.arange(4), list(seen))
            want = np.where(mask, np.where(logits > 0, logits / 2.0, logits * 2.0), logits)
            expected.append(int(np.argmax(want)))
            picked.append(int(np.array(sample(mx.array(logits[None]), [row]).tokens)[0]))
            seen.add(picked[-1])
        assert picked == expected and picked[0] == 0  # the prompt's token 1 lost its lead


@pytest.mark.parametrize("form", ["packed", "additive"])
def test_token_masks_packed_and_additive_allow_exactly_the_set_bits(form):
    """Both mask forms (packed bits for a GPU, host-built 0/-inf for a CPU) keep exactly
    the allowed tokens, over a vocabulary that is not a multiple of 32."""
    from mlxserve.engine.sampler import apply_token_mask
    from mlxserve.structured.masks import additive_mask

    rng = np.random.default_rng(1)
    vocab = 70
    allowed = rng.random((3, vocab)) < 0.3
    allowed[:, 5] = True
    bits = np.zeros((3, 3), np.uint32)
    for row, token in zip(*np.nonzero(allowed)):
        bits[row, token // 32] |= np.uint32(1 << (token % 32))
    logits = rng.normal(size=(3, vocab)).astype(np.float32)
    mask = additive_mask(bits.view(np.int32), vocab) if form == "additive" else bits
    masked = np.array(apply_token_mask(mx.array(logits), mx.array(mask)))
    assert np.array_equal(np.isfinite(masked), allowed)
    assert np.array_equal(masked[allowed], logits[allowed])
    rows = [RowSampler(SamplingParams(temperature=0.0), [0], vocab, 0) for _ in range(3)]
    tokens = np.array(sample(mx.array(logits), rows, mx.array(mask)).tokens)
    assert np.array_equal(tokens, np.where(allowed, logits, -np.inf).argmax(axis=1))
