"""Which prompt tokens a sparse prefill keeps. Pure numpy: no MLX.

Tokens are kept in whole chunks (default 32): the best-scored chunks, up to the keep
fraction of the scored tokens, plus the first tokens (attention sinks) and the prompt's
tail, which are always kept. A chunk's score is the mean of its tokens' scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Selection:
    chunk_tokens: int = 32
    sink_tokens: int = 32
    tail_tokens: int = 64


def kept_positions(scores: np.ndarray, start: int, keep_pct: float,
                   shape: Selection = Selection()) -> np.ndarray:
    """Sorted prompt positions to prefill, out of ``[start, start + len(scores))``.

    ``scores[i]`` scores position ``start + i``; positions before ``start`` (a prefix-cache
    hit) are already computed and never returned. Chunks are aligned to ``start``."""
    n = len(scores)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    step = shape.chunk_tokens
    chunk_of = np.arange(n) // step
    count = int(chunk_of[-1]) + 1
    chunk_scores = np.bincount(chunk_of, weights=scores, minlength=count) / np.bincount(
        chunk_of, minlength=count)
    forced = _forced_chunks(n, start, shape)
    keep = np.zeros(count, dtype=bool)
    keep[forced] = True
    budget = max(0, int(np.ceil(keep_pct * n)) - int(sum(_chunk_len(c, n, step)
                                                         for c in forced)))
    for c in np.argsort(-chunk_scores, kind="stable"):
        if budget <= 0:
            break
        if not keep[c]:
            keep[c] = True
            budget -= _chunk_len(int(c), n, step)
    return start + np.flatnonzero(keep[chunk_of])


def _forced_chunks(n: int, start: int, shape: Selection) -> list[int]:
    """Chunks holding the sinks (prompt positions below ``sink_tokens``) and the tail."""
    step = shape.chunk_tokens
    sinks = max(0, min(n, shape.sink_tokens - start))
    tail = min(n, shape.tail_tokens)
    chunks = set(range(-(-sinks // step)))
    chunks |= set(range((n - tail) // step, -(-n // step)))
    return sorted(chunks)


def _chunk_len(chunk: int, n: int, step: int) -> int:
    return min(step, n - chunk * step)


def contiguous_runs(positions: np.ndarray) -> list[tuple[int, int]]:
    """(first position, length) of each run of consecutive positions, in order."""
    if len(positions) == 0:
        return []
    breaks = np.flatnonzero(np.diff(positions) != 1) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [len(positions)]])
    return [(int(positions[s]), int(e - s)) for s, e in zip(starts, ends)]
