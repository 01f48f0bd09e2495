"""SpecPrefill's prefill of one request (MLX, engine thread only).

The scheduler gives a sparse request two kinds of chunks: draft chunks over the whole
prompt (the draft reads it; the last one scores it and selects the kept positions, a
host read-back once per request), then target chunks over the kept tokens, counted
from the first uncached position (a prefix-cache hit is dense and stays).

The target prefills on a one-row ``BatchCache`` seeded with the row's prefix: each
contiguous run of kept positions [p, p + n) is one forward with the row's position delta
set so RoPE sees p while storage holds only kept tokens; the prompt's last token runs
alone for its logits (as a dense prefill). The row then decodes at the full prompt
length (delta = prompt length - stored tokens), joining a decode batch with that delta.
When every layer is plain attention (no sliding window, no SSM state) and the model's
rope can take per-token positions (models/token_positions.py), a chunk's kept tokens go
in ONE forward of one row: storage order is position order, so the plain causal mask over
storage is exactly "see the kept tokens before you", attention stays the fused kernel
(no mask array, no scores materialized) and RoPE rotates each token at its own position.
Otherwise short runs (a few chunks) are prefilled together, as the rows of one packed
forward (cache/packed_runs.py), and longer runs one forward each.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import mlx.core as mx
import numpy as np

from mlxserve.backend import is_cpu_only
from mlxserve.cache.batch_kv import BatchCache
from mlxserve.cache.packed_runs import PackedLayer, PackedRuns, packable
from mlxserve.engine.model_step import forward
from mlxserve.engine.row import Row
from mlxserve.engine.scheduler import PrefillChunk
from mlxserve.models.token_positions import (TokenPositions, allow_token_positions,
                                             forbid_token_positions)
from mlxserve.spec.specprefill.scoring import DraftScorer
from mlxserve.spec.specprefill.select import Selection, contiguous_runs, kept_positions

log = logging.getLogger(__name__)

PACK_RUN_CHUNKS = 4  # runs of at most this many chunks share packed forwards


@dataclass
class SparseRow:
    start: int  # first uncached prompt position: the scored and sparsified part begins here
    keep_pct: float
    draft_cache: list | None = None  # the draft's caches while it reads the prompt
    kept: np.ndarray | None = None  # prompt positions the target prefills (from start)
    batch: BatchCache | None = None  # the target's one-row cache while it prefills
    width: int = 32  # the selection's chunk: short runs are packed in pieces of it


def read_draft(scorer: DraftScorer, row: Row, chunk: PrefillChunk,
               shape: Selection) -> int | None:
    """One draft chunk; after the last, the kept positions (returns how many)."""
    sparse = row.sparse
    if sparse.draft_cache is None:
        sparse.draft_cache = scorer.new_cache()
    scorer.read(sparse.draft_cache, row.prompt, chunk.start, chunk.start + chunk.length)
    if not chunk.is_last:
        return None
    scores = scorer.scores(sparse.draft_cache, row.prompt)
    sparse.draft_cache = None
    sparse.kept = kept_positions(scores[sparse.start:], sparse.start, sparse.keep_pct, shape)
    return len(sparse.kept)


def prefill_kept(model: Any, prototype: list, row: Row, chunk: PrefillChunk
                 ) -> mx.array | None:
    """One target chunk of kept tokens (indices counted from ``start``); the (1, V)
    logits of the prompt's last token when the chunk ends the prefill."""
    sparse, rid = row.sparse, row.request.request_id
    if sparse.batch is None:
        sparse.batch = BatchCache(prototype)
        sparse.batch.append(rid, row.cache, sparse.start, None)
    first = chunk.start - sparse.start
    kept = sparse.kept[first:first + chunk.length]
    logits = (_forward_positions(model, sparse.batch, rid, row.prompt, kept)
              if _one_row_path(model, sparse.batch) else None)
    if logits is None:
        logits = _prefill_runs(model, sparse, rid, row.prompt, kept, chunk.is_last)
    if not chunk.is_last:
        mx.async_eval([c.state for c in sparse.batch.layers])
        return None
    return logits[:, -1, :]


def _prefill_runs(model: Any, sparse: SparseRow, rid: str, prompt: mx.array,
                  kept: np.ndarray, is_last: bool) -> mx.array | None:
    """The kept tokens as runs; at the prompt's end its last token runs alone for the
    logits (returned; None before the end)."""
    runs = contiguous_runs(kept)
    if not is_last:
        _forward_runs(model, sparse.batch, rid, prompt, runs, sparse.width)
        return None
    last, count = runs[-1]
    runs = runs[:-1] + ([(last, count - 1)] if count > 1 else [])
    _forward_runs(model, sparse.batch, rid, prompt, runs, sparse.width)
    return _forward_run(model, sparse.batch, rid, prompt, last + count - 1, 1)


def _one_row_path(model: Any, batch: BatchCache) -> bool:
    """On a GPU only: there the one row runs the fused causal attention kernel, while the
    packed rows' mask array does not (the H200 run of the packed path was 2-4x slower
    than dense). On a CPU both compute the same scores and packed measured 1.15-1.3x
    faster (4k prompt, 8-layer 1024-wide qwen3, keep 0.3)."""
    plain = packable(batch.layers) and all(layer.window is None for layer in batch.layers)
    return plain and not is_cpu_only() and allow_token_positions(model)


class _PositionedLayer:
    """A one-row ``KVRows`` layer whose ``offset`` places each token at its position."""

    def __init__(self, kv, positions: TokenPositions):
        self.kv, self.offset = kv, positions

    def make_mask(self, *args, **kwargs):
        return self.kv.make_mask(*args, **kwargs)

    def update_and_fetch(self, keys: mx.array, values: mx.array):
        return self.kv.update_and_fetch(keys, values)

    @property
    def state(self):
        return self.kv.state

    def is_trimmable(self) -> bool:
        return True


def _forward_positions(model: Any, batch: BatchCache, rid: str, prompt: mx.array,
                       positions: np.ndarray) -> mx.array:
    """The kept tokens at ``positions`` (ascending) in one forward; the row then continues
    after the last of them. None when the model cannot take per-token positions."""
    at = TokenPositions(mx.array(positions, dtype=mx.int32))
    layers = [_PositionedLayer(layer, at) for layer in batch.layers]
    try:
        logits = forward(model, prompt[at.positions][None], layers)
    except Exception:  # a model that does more with cache.offset than RoPE: packed runs
        log.warning("per-token positions failed on this model; packed runs from now on",
                    exc_info=True)
        forbid_token_positions(model)
        return None  # nothing was advanced: the packed runs write the same columns
    batch.advance(len(positions))
    batch.set_delta(rid, int(positions[-1]) + 1 - batch.length(rid))
    return logits


def _forward_runs(model: Any, batch: BatchCache, rid: str, prompt: mx.array,
                  runs: list[tuple[int, int]], width: int) -> None:
    """In position order (storage order is causal order): short runs of whole chunks
    together in packed forwards, longer (or ragged) runs one forward each."""
    group: list[int] = []  # first positions of ``width``-token pieces waiting to be packed
    can_pack = packable(batch.layers)
    for position, count in runs:
        if can_pack and count % width == 0 and count <= PACK_RUN_CHUNKS * width:
            group += range(position, position + count, width)
            continue
        _forward_packed(model, batch, prompt, group, width)
        group = []
        _forward_run(model, batch, rid, prompt, position, count)
    _forward_packed(model, batch, prompt, group, width)


def _forward_packed(model: Any, batch: BatchCache, prompt: mx.array, pieces: list[int],
                    width: int) -> None:
    """Pieces of ``width`` tokens at their positions as the rows of one forward."""
    if not pieces:
        return
    runs = PackedRuns(batch.layout.lengths[0], pieces, width)
    tokens = mx.stack([prompt[p:p + width] for p in pieces])
    forward(model, tokens, [PackedLayer(layer, runs) for layer in batch.layers])
    batch.advance(len(pieces) * width)


def _forward_run(model: Any, batch: BatchCache, rid: str, prompt: mx.array, position: int,
                 count: int) -> mx.array:
    """Prompt positions [position, position + count) at their own positions."""
    batch.set_delta(rid, position - batch.length(rid))
    logits = forward(model, prompt[position:position + count][None], batch.layers)
    batch.advance(count)
    return logits
