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
Short runs (a few chunks) are prefilled together, as the rows of one packed forward
(cache/packed_runs.py), so a scattered selection costs a few forwards, not one per run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mlx.core as mx
import numpy as np

from mlxserve.cache.batch_kv import BatchCache
from mlxserve.cache.packed_runs import PackedLayer, PackedRuns, packable
from mlxserve.engine.model_step import forward
from mlxserve.engine.row import Row
from mlxserve.engine.scheduler import PrefillChunk
from mlxserve.spec.specprefill.scoring import DraftScorer
from mlxserve.spec.specprefill.select import Selection, contiguous_runs, kept_positions

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
    runs = contiguous_runs(sparse.kept[first:first + chunk.length])
    if not chunk.is_last:
        _forward_runs(model, sparse.batch, rid, row.prompt, runs, sparse.width)
        mx.async_eval([c.state for c in sparse.batch.layers])
        return None
    last, count = runs[-1]
    runs = runs[:-1] + ([(last, count - 1)] if count > 1 else [])
    _forward_runs(model, sparse.batch, rid, row.prompt, runs, sparse.width)
    logits = _forward_run(model, sparse.batch, rid, row.prompt, last + count - 1, 1)
    return logits[:, -1, :]


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
