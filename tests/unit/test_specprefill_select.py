"""SpecPrefill's chunk selection and plan, on their own (pure numpy / Python)."""

from __future__ import annotations

import numpy as np
import pytest

from mlxserve.config import SpecPrefillConfig
from mlxserve.spec.specprefill.plan import keep_fraction
from mlxserve.spec.specprefill.select import Selection, contiguous_runs, kept_positions

SHAPE = Selection(chunk_tokens=32, sink_tokens=32, tail_tokens=64)


def _scores(n: int, hot: list[int] = ()) -> np.ndarray:
    scores = np.random.default_rng(0).random(n) * 0.01
    scores[list(hot)] = 1.0
    return scores


def test_sinks_and_tail_are_kept_even_when_they_score_nothing():
    scores = np.ones(1000)
    scores[:32] = 0.0
    scores[-64:] = 0.0
    kept = set(kept_positions(scores, 0, 0.2, SHAPE).tolist())
    assert set(range(32)) <= kept
    assert set(range(1000 - 64, 1000)) <= kept


def test_whole_chunks_are_kept_where_the_scores_are_high():
    kept = kept_positions(_scores(1024, hot=[500]), 0, 0.2, SHAPE)
    assert set(range(480, 512)) <= set(kept.tolist())  # the chunk holding position 500
    chunks = {int(p) // 32 for p in kept}
    assert len(kept) == 32 * len(chunks)  # only whole chunks (1024 is a multiple of 32)


@pytest.mark.parametrize("keep", [0.1, 0.3, 0.5, 0.9])
def test_the_keep_fraction_is_honoured_to_a_chunk(keep):
    n = 4096
    kept = kept_positions(_scores(n), 0, keep, SHAPE)
    assert keep * n <= len(kept) < keep * n + 32
    assert np.all(np.diff(kept) > 0)


def test_keep_one_keeps_everything_and_a_tiny_keep_only_sinks_and_tail():
    n = 777  # a partial last chunk
    assert kept_positions(_scores(n), 0, 1.0, SHAPE).tolist() == list(range(n))
    few = kept_positions(_scores(n), 0, 0.01, SHAPE).tolist()
    tail_first = (n - 64) // 32 * 32
    assert few == list(range(32)) + list(range(tail_first, n))


def test_a_prefix_hit_is_never_returned_and_chunks_start_at_the_suffix():
    start, n = 100, 500
    kept = kept_positions(_scores(n, hot=[250]), start, 0.3, SHAPE)
    assert kept.min() >= start and kept.max() == start + n - 1
    assert set(range(start + 224, start + 256)) <= set(kept.tolist())  # hot chunk 7
    # the sinks lie inside the hit: the suffix's first chunk is not forced
    assert start not in kept_positions(_scores(n, hot=[250]), start, 0.01, SHAPE)


def test_contiguous_runs():
    assert contiguous_runs(np.array([0, 1, 2, 5, 6, 9])) == [(0, 3), (5, 2), (9, 1)]
    assert contiguous_runs(np.array([], dtype=np.int64)) == []


def test_plan_decides_by_request_then_server():
    on = SpecPrefillConfig(enabled=True, threshold=1000, keep_pct=0.3)
    off = SpecPrefillConfig()
    assert keep_fraction(on, None, None, 1000) == 0.3
    assert keep_fraction(on, None, None, 999) is None  # below the threshold
    assert keep_fraction(on, False, None, 5000) is None
    assert keep_fraction(off, None, None, 50000) is None
    assert keep_fraction(off, True, 0.5, 200) == 0.5  # forced below the threshold
    assert keep_fraction(off, True, None, 96) is None  # nothing between sinks and tail
