"""SpecPrefill in the engine, on tiny random models (float32 CPU, greedy).

- keep 1.0 gives the dense prefill's tokens exactly (llama, qwen3, gemma3, qwen3_next);
- a sparse prefill (kept chunks at their original positions, then decode at the full
  length) equals a dense forward in which the dropped positions are masked from every
  query: the position handling is right;
- a prefix-cache hit stays dense and a sparse prompt is not stored as if it were dense.
"""

from __future__ import annotations

from dataclasses import replace

import mlx.core as mx
import numpy as np
import pytest
from mlx_lm.models.cache import KVCache, make_prompt_cache

from engine_support import collect, greedy, reference_model, run_with_engine
from mlxserve.config import EngineConfig, SpecPrefillConfig
from mlxserve.engine.request import SpecPrefillOptions
from mlxserve.engine import sparse_prefill
from mlxserve.engine.row import Row
from mlxserve.engine.scheduler import PrefillChunk
from mlxserve.engine.sparse_prefill import SparseRow, prefill_kept
from mlxserve.errors import InvalidRequest

PROMPT = [int(t) for t in np.random.default_rng(7).integers(3, 250, 600)]


def _config(path: str, **engine) -> EngineConfig:
    return EngineConfig(specprefill=SpecPrefillConfig(draft_model=path), **engine)


def _sparse(request, keep: float | None):
    asked = SpecPrefillOptions(False) if keep is None else SpecPrefillOptions(True, keep)
    return replace(request, specprefill=asked)


@pytest.mark.parametrize("family", ["llama", "qwen3", "gemma3", "qwen3_next", "qwen3-gpu-path"])
def test_keep_one_equals_the_dense_prefill(tiny_dir, family, monkeypatch):
    if family.endswith("-gpu-path"):  # the one-row path a GPU takes, run on this CPU
        monkeypatch.setattr(sparse_prefill, "is_cpu_only", lambda: False)
        family = family.removesuffix("-gpu-path")
    path = str(tiny_dir(family))

    async def body(engine):
        dense = await collect(engine, _sparse(greedy("d", PROMPT, 10), None))
        full = await collect(engine, _sparse(greedy("s", PROMPT, 10), 1.0))
        return dense, full, engine.stats()

    dense, full, stats = run_with_engine(path, body, _config(path, enable_prefix_caching=False))
    assert full["tokens"] == dense["tokens"]
    assert full["deltas"][-1].prefilled_tokens == len(PROMPT)
    assert dense["deltas"][-1].prefilled_tokens is None
    assert stats.specprefill_requests == 1


def test_a_low_keep_prefills_fewer_tokens_and_is_counted(tiny_dir):
    path = str(tiny_dir("qwen3"))

    async def body(engine):
        out = await collect(engine, _sparse(greedy("s", PROMPT, 6), 0.2))
        return out, engine.stats()

    out, stats = run_with_engine(path, body, _config(path))
    kept = out["deltas"][-1].prefilled_tokens
    assert 0.2 * len(PROMPT) <= kept < 0.2 * len(PROMPT) + 32 + 64
    assert len(out["tokens"]) == 6
    assert stats.specprefill_tokens_skipped == len(PROMPT) - kept


class _MaskedKV(KVCache):
    """A reference cache: every query sees only the keys at ``visible`` positions."""

    def __init__(self, visible: np.ndarray):
        super().__init__()
        self.visible = visible

    def make_mask(self, N, return_array=False, window_size=None):
        queries = self.offset + np.arange(N)
        keys = np.arange(self.offset + N)
        seen = np.concatenate([self.visible, np.ones(max(0, len(keys) - len(self.visible)),
                                                     bool)])[:len(keys)]
        return mx.array((keys[None] <= queries[:, None]) & seen[None])


@pytest.mark.parametrize("path", ["one_row", "packed_runs"])
def test_sparse_prefill_equals_dense_with_the_dropped_positions_masked(tiny_dir, monkeypatch,
                                                                      path):
    """Both ways of prefilling the kept tokens: one row with per-token RoPE positions (a
    GPU's way for plain attention models) and packed runs (a CPU's, and the way for other
    layer kinds), each chosen here by what the device check answers."""
    monkeypatch.setattr(sparse_prefill, "is_cpu_only", lambda: path == "packed_runs")
    model, _ = reference_model(str(tiny_dir("llama")))
    n = len(PROMPT)
    kept = np.array(sorted(set(range(0, 32)) | set(range(96, 160)) | set(range(300, 332))
                           | set(range(n - 64, n))))
    visible = np.zeros(n, bool)
    visible[kept] = True
    reference = [_MaskedKV(visible) for _ in model.layers]
    prompt = mx.array(PROMPT, dtype=mx.uint32)
    ref_logits = [model(prompt[None], cache=reference)[0, -1]]

    row = Row(greedy("r", PROMPT, 4), None, make_prompt_cache(model), prompt,
              sparse=SparseRow(0, 0.3, kept=kept))
    prototype = make_prompt_cache(model)
    prefill_kept(model, prototype, row, PrefillChunk("r", 0, 100, is_last=False))
    logits = [prefill_kept(model, prototype, row, PrefillChunk("r", 100, len(kept) - 100,
                                                               is_last=True))[0]]
    batch = row.sparse.batch
    assert batch.layout.lengths[0] + batch.layout.deltas[0] == n  # decodes at full length
    for _ in range(3):
        token = mx.argmax(ref_logits[-1])
        assert token.item() == mx.argmax(logits[-1]).item()
        ref_logits.append(model(token.reshape(1, 1), cache=reference)[0, -1])
        logits.append(model(token.reshape(1, 1), cache=batch.layers)[0, -1])
        batch.advance(1)
    for got, want in zip(logits, ref_logits):
        assert np.allclose(np.array(got), np.array(want), rtol=1e-4, atol=2e-3)


def test_a_prefix_hit_stays_dense_and_a_sparse_prompt_is_not_stored(tiny_dir):
    path = str(tiny_dir("llama"))
    head = PROMPT[:200]

    async def body(engine):
        await collect(engine, _sparse(greedy("a", head, 2), None))  # stores head
        sparse = await collect(engine, _sparse(greedy("b", PROMPT, 6), 1.0))
        dense = await collect(engine, _sparse(greedy("c", PROMPT, 6), None))
        return sparse, dense

    sparse, dense = run_with_engine(path, body, _config(path))
    cached = sparse["deltas"][-1].cached_tokens
    assert cached >= 192  # the stored head (prompt + output, whole blocks)
    assert sparse["deltas"][-1].prefilled_tokens == len(PROMPT) - cached
    assert dense["deltas"][-1].cached_tokens == cached  # b's sparse prompt was not stored
    assert dense["tokens"] == sparse["tokens"]


def test_bad_keep_and_no_draft_are_refused(tiny_dir):
    path = str(tiny_dir("llama"))

    async def body(engine):
        errors = []
        for request in (_sparse(greedy("x", PROMPT, 2), 0.3),
                        replace(greedy("y", PROMPT, 2),
                                specprefill=SpecPrefillOptions(None, 1.5))):
            with pytest.raises(InvalidRequest) as e:
                await collect(engine, request)
            errors.append(e.value.param)
        return errors

    assert run_with_engine(path, body) == ["specprefill", "specprefill_keep_pct"]


def test_speculative_decoding_after_a_sparse_prefill_keeps_the_tokens(tiny_dir):
    """A sparsely prefilled row (its position delta set) verifies and trims like any row:
    draft-model speculation on it gives the tokens it gives without speculating."""
    from mlxserve.config import SpeculativeConfig

    path = str(tiny_dir("llama"))
    speculative = SpeculativeConfig(method="draft_model", model=path, num_speculative_tokens=3,
                                    options={"adaptive": False})

    async def body(engine):
        plain = await collect(engine, replace(_sparse(greedy("p", PROMPT, 16), 0.3),
                                              speculative=False))
        spec = await collect(engine, _sparse(greedy("s", PROMPT, 16), 0.3))
        return plain, spec, engine.stats()

    plain, spec, stats = run_with_engine(path, body, _config(path, speculative=speculative))
    assert spec["tokens"] == plain["tokens"]
    assert spec["deltas"][-1].prefilled_tokens < len(PROMPT)
    assert stats.spec_decode_num_drafts > 0
