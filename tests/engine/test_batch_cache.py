"""The engine-owned batch cache on tiny random models (real MLX, float32 CPU): per-row trim,
per-row positions, SSM snapshots, memory of skewed batches."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from engine_support import greedy, reference_model
from mlx_lm.models.cache import make_prompt_cache

from mlxserve.cache.batch_kv import BatchCache
from mlxserve.cache.rows import KVRows

TOKENS = [5, 17, 42, 8, 99, 23, 61, 7, 150, 33, 12, 88, 64, 3, 120, 45, 9, 77, 31, 200]


def _alone_logits(model, tokens: list[int]) -> np.ndarray:
    """Last-position logits of one fresh single-stream prefill (mlx-lm's own caches)."""
    cache = make_prompt_cache(model)
    logits = model(mx.array(tokens)[None], cache=cache)
    return np.array(logits[0, -1])


def _joined(model, prompts: list[list[int]], deltas=None) -> BatchCache:
    """Each prompt but its last token prefilled alone, then all joined into one batch whose
    next inputs are the prompts' last tokens."""
    batch = BatchCache(make_prompt_cache(model))
    for k, prompt in enumerate(prompts):
        own = make_prompt_cache(model)
        model(mx.array(prompt[:-1])[None], cache=own)
        delta = deltas[k] if deltas else 0
        batch.append(f"r{k}", own, len(prompt) - 1, mx.array([prompt[-1]]), delta=delta)
    return batch


def _step(model, batch: BatchCache, tokens: list[int] | None = None) -> np.ndarray:
    inputs = batch.tokens if tokens is None else mx.array(tokens)
    logits = model(inputs[:, None], cache=batch.layers)[:, -1, :]
    batch.advance(1)
    return np.array(logits)


@pytest.mark.parametrize("family", ["qwen3", "gemma3"])
def test_rows_trimmed_to_different_lengths_decode_as_a_fresh_prefill(tiny_dir, family):
    model, _ = reference_model(tiny_dir(family))
    prompts = [TOKENS[:9], TOKENS[3:15], TOKENS[1:20]]  # gemma3's window is 16
    batch = _joined(model, prompts)
    extra = [[11, 12, 13, 14], [21, 22, 23, 24], [31, 32, 33, 34]]
    _step(model, batch)  # each prompt's last token
    for column in range(4):  # four more tokens per row, forced
        _step(model, batch, [e[column] for e in extra])
    kept = {"r0": 3, "r1": 0, "r2": 5}  # drop the last n tokens, per row
    for rid, n in kept.items():
        assert batch.trim(rid, n) == n
    assert len(set(batch.layout.lengths)) == 3  # now three different lengths
    histories = [p + e for p, e in zip(prompts, extra)]
    kept_tokens = [h[:len(h) - kept[f"r{k}"]] for k, h in enumerate(histories)]
    got = _step(model, batch, [90, 91, 92])
    for k, tokens in enumerate(kept_tokens):
        want = _alone_logits(model, tokens + [90 + k])
        np.testing.assert_allclose(got[k], want, atol=2e-4, rtol=1e-4)
        assert int(got[k].argmax()) == int(want.argmax())


def test_rows_at_different_positions_with_one_storage_length(tiny_dir):
    """Three rows store the same number of tokens but decode at different positions (as
    after a sparse prefill): each equals itself alone at its position, and the position
    really changes the result (a gap between the stored tokens and the new one)."""
    model, _ = reference_model(tiny_dir("qwen3"))
    prompt = TOKENS[:10]
    deltas = [0, 4, 9]
    together = _step(model, _joined(model, [prompt] * 3, deltas))
    assert together.shape[0] == 3
    for k, delta in enumerate(deltas):
        alone = _step(model, _joined(model, [prompt], [delta]))
        np.testing.assert_allclose(together[k], alone[0], atol=2e-4, rtol=1e-4)
    assert np.abs(together[0] - together[2]).max() > 1e-2  # the gap matters
    # a shift of every position (no gap) changes nothing: RoPE is relative
    shifted = BatchCache(make_prompt_cache(model))
    shifted.append("s", make_prompt_cache(model), 0, mx.array([prompt[0]]), delta=7)
    for token in prompt[1:]:
        _step(model, shifted)
        shifted.tokens = mx.array([token])
    np.testing.assert_allclose(_step(model, shifted)[0], _alone_logits(model, prompt),
                               atol=2e-4, rtol=1e-4)


def test_ssm_rows_restore_a_snapshot(tiny_dir):
    """Hybrid (gated-delta) layers cannot be trimmed: a snapshot taken before three decode
    steps, restored for one row, gives that row exactly its earlier next logits."""
    model, _ = reference_model(tiny_dir("qwen3_next"))
    batch = _joined(model, [TOKENS[:8], TOKENS[4:15]])
    assert not batch.trimmable()
    snapshot = batch.snapshot()
    first = _step(model, batch)
    for token in (70, 71):
        _step(model, batch, [token, token])
    batch.restore(snapshot, ["r0"])
    again = _step(model, batch, [TOKENS[7], 72])
    np.testing.assert_allclose(again[0], first[0], atol=1e-5)
    assert np.abs(again[1] - first[1]).max() > 1e-3  # the other row kept its own state


def test_one_long_and_127_short_rows_hold_about_their_own_tokens(tiny_dir):
    """One 8,192-token row and 127 rows of 100 tokens: the buffers hold at most 1.2x the
    rows' own tokens (a padded batch would hold 128 x 8,192), and ``nbytes`` is what the
    arrays really hold."""
    from mlxserve.engine.runner import Runner
    from mlxserve.engine.scheduler import PrefillChunk, StepPlan

    model, _ = reference_model(tiny_dir("qwen3"))
    runner = Runner(model, model.args.vocab_size, lambda: make_prompt_cache(model),
                    merge_floor_tokens=0)
    rng = np.random.default_rng(0)
    lengths = [8192] + [100] * 127
    ids = [f"m{k}" for k in range(len(lengths))]
    for rid, n in zip(ids, lengths):
        runner.add(greedy(rid, rng.integers(0, 250, n).tolist(), 4), seed=0)
    for start in range(0, 8192, 1024):  # the long prompt in chunks, as the scheduler would
        runner.run(StepPlan(prefills=[PrefillChunk("m0", start, 1024, start + 1024 == 8192)]))
    runner.run(StepPlan(prefills=[PrefillChunk(r, 0, 100, is_last=True) for r in ids[1:]]))
    outputs, failures = runner.run(StepPlan(decodes=ids))
    assert not failures and len(runner.collect()[0]) == 128
    layers = [c for b in runner.batches for c in b.layers]
    per_token = sum(2 * c.keys.shape[1] * c.keys.shape[3] * c.keys.itemsize
                    for c in runner.batches[0].layers)
    own = sum(n + 1 for n in lengths) * per_token  # each row's tokens after one decode
    held = runner.nbytes()
    assert held == sum(c.keys.nbytes + c.values.nbytes for c in layers if isinstance(c, KVRows))
    assert held <= 1.2 * own, (held, own)
    assert len(runner.batches) == 2  # the long row decodes in a batch of its own


@pytest.mark.parametrize("family", ["qwen3", "qwen3_next"])
def test_rows_leaving_together_leave_the_others_decoding_as_fresh_prefills(tiny_dir, family):
    """Rows leave together from the front, the middle and the end (one gather per buffer),
    then one alone and then the last slot; each remaining row's next logits equal a fresh
    single-stream prefill of its tokens (SSM layers included)."""
    model, _ = reference_model(tiny_dir(family))
    history = {f"r{k}": TOKENS[k:k + 6 + k] for k in range(8)}
    batch = _joined(model, list(history.values()))
    _step(model, batch)  # each prompt's last token
    kv = next(layer for layer in batch.layers if isinstance(layer, KVRows))
    slots = kv.keys.shape[0]

    def check(leaving: list[str], token: int) -> None:
        batch.remove_rows(leaving)
        for rid in leaving:
            del history[rid]
        assert batch.ids == list(history)
        inputs = [token + k for k in range(batch.size)]
        got = _step(model, batch, inputs)
        for k, rid in enumerate(batch.ids):
            history[rid] = history[rid] + [inputs[k]]
            np.testing.assert_allclose(got[k], _alone_logits(model, history[rid]),
                                       atol=2e-4, rtol=1e-4)

    check(["r0", "r3", "r7"], 50)
    assert kv.keys.shape[0] == slots  # five of eight slots used: they stay allocated
    check(["r2"], 60)
    check(["r6"], 70)  # the last slot: nothing moves
    assert batch.ids == ["r1", "r4", "r5"]
