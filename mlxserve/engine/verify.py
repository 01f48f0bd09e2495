"""A verify step of one decode batch (MLX, engine thread): each row's last token plus its
proposals in one (B, W) target forward, acceptance per row (engine/acceptance.py), then the
rollback of what was rejected.

Rows of the batch take part with their own width ``w_b = 1 + n_b`` (rows not speculating:
1; rows without budget this step ride along with 0: nothing of theirs is kept). Every row
writes W columns; the rollback keeps ``kept_b`` of them:
- attention layers: a per-row trim (the row's length becomes its old length + kept);
- SSM layers (not trimmable): the forward runs with each row's real width as
  ``ArraysCache.lengths`` (mlx-lm's right-padding protocol, as the batched prefill uses),
  so a row that keeps all its tokens is exact at once; a row that keeps fewer gets the
  snapshot taken before the verify back and its kept tokens run again (one more forward
  for those rows, the others ride along and are restored).
Verify steps are read back at once (the next step's inputs depend on what was kept), so
they do not overlap with the host as plain decode steps do; the speculation controller
weighs that in (engine/speculation.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import mlx.core as mx

from mlxserve.cache.batch_kv import BatchCache
from mlxserve.cache.rows import ArrayRows
from mlxserve.engine.acceptance import Acceptance, accept
from mlxserve.engine.model_step import forward, forward_with_hidden
from mlxserve.engine.request import TokenLogprob


@dataclass
class VerifyOutcome:
    """What one row kept: its output tokens (their logprobs when asked)."""

    request_id: str
    tokens: list[int]
    logprobs: list[TokenLogprob | None] = field(default_factory=list)


@dataclass
class PendingVerify:
    """A launched verify; ``read_back`` settles it (trim / restore) and returns outcomes."""

    batch: BatchCache
    rows: list  # engine.row.Row per slot
    widths: list[int]  # per slot: tokens computed (0: riding along)
    drafts: list[list[int]]
    base: list[int]  # per slot: length before the verify
    snapshot: dict
    result: Acceptance
    extra: dict
    inputs: mx.array  # (B, W) the verify's input tokens (a re-run takes its first columns)
    hidden: mx.array | None = None  # (B, W, hidden) when the proposer needs hidden states

    masked = None  # the runner's pending-piece protocol: verify rows are never masked

    @property
    def ids(self) -> list[str]:
        return [rid for rid, w in zip(self.batch.ids, self.widths) if w > 0]

    def arrays(self) -> list:
        return self.result.arrays()


def launch_verify(model, batch: BatchCache, rows: list, widths: list[int],
                  drafts: list[list[int]], probs: list | None, extra: dict,
                  with_hidden: bool = False) -> PendingVerify:
    """Build the verify of ``batch`` (rows in slot order) and its acceptance (lazy)."""
    width = max(widths)
    padded = [list(d) + [0] * (width - 1 - len(d)) for d in drafts]
    inputs = mx.concatenate([batch.tokens[:, None],
                             mx.array(padded, dtype=mx.uint32).reshape(len(rows), -1)],
                            axis=1)
    snapshot, base = batch.snapshot(), list(batch.layout.lengths)
    _ssm_lengths(batch, widths)
    hidden = None
    if with_hidden:
        logits, hidden = forward_with_hidden(model, inputs, batch.layers)
    else:
        logits = forward(model, inputs, batch.layers, **extra)
    _ssm_lengths(batch, None)
    batch.advance(width)
    result = accept(logits, [r.sampler for r in rows], drafts, probs)
    return PendingVerify(batch, rows, widths, drafts, base, snapshot, result, extra,
                         inputs, hidden)


def settle_verify(model, pending: PendingVerify) -> list[VerifyOutcome]:
    """Read back the acceptance, keep what was accepted, roll back the rest."""
    tokens = pending.result.tokens.tolist()
    kept = [min(k, w) for k, w in zip(pending.result.kept.tolist(), pending.widths)]
    logprobs = _read_logprobs(pending, tokens, kept)
    batch = pending.batch
    ssm = not batch.trimmable()
    if ssm:
        riders = [rid for rid, w in zip(batch.ids, pending.widths) if w == 0]
        batch.restore(pending.snapshot, riders)
    batch.layout.lengths = [b + k for b, k in zip(pending.base, kept)]
    batch.layout.changed()
    if ssm:
        _rerun_partial(model, pending, tokens, kept)
    _commit_rows(pending, tokens, kept)
    if pending.hidden is not None:  # each row's hidden state where its last token came from
        for s, row in enumerate(pending.rows):
            if kept[s]:
                row.hidden = pending.hidden[s, kept[s] - 1]
    return [VerifyOutcome(rid, tokens[s][:kept[s]], logprobs[s])
            for s, rid in enumerate(batch.ids) if pending.widths[s] > 0]


def _commit_rows(pending: PendingVerify, tokens: list[list[int]], kept: list[int]) -> None:
    """Sampler positions, penalty counts and each row's next input token."""
    slots, flat = [], []
    for s, row in enumerate(pending.rows):
        row.sampler.position += kept[s]
        if row.sampler.has_penalties:
            slots += [row.sampler.slot] * kept[s]
            flat += tokens[s][:kept[s]]
    if slots:
        pending.rows[0].sampler.table.record(slots, mx.array(flat, dtype=mx.uint32))
    batch = pending.batch
    moved = [s for s, k in enumerate(kept) if k > 0]
    if moved:
        last = mx.array([tokens[s][kept[s] - 1] for s in moved], dtype=mx.uint32)
        previous = batch.tokens
        previous[mx.array(moved, dtype=mx.int32)] = last
        batch.tokens = previous


def _rerun_partial(model, pending: PendingVerify, tokens: list[list[int]],
                   kept: list[int]) -> None:
    """SSM rows that kept fewer tokens than they computed: back to the snapshot, then
    their kept tokens again (input: the old last token and the accepted proposals)."""
    batch = pending.batch
    again = [s for s, (k, w) in enumerate(zip(kept, pending.widths)) if 0 < k < w]
    if not again:
        return
    ids = [batch.ids[s] for s in again]
    after = batch.snapshot()
    batch.restore(pending.snapshot, ids)  # SSM state and the old lengths of those rows
    width = max(kept[s] for s in again)
    runs = [kept[s] if s in again else 0 for s in range(batch.size)]
    _ssm_lengths(batch, runs)
    forward(model, pending.inputs[:, :width], batch.layers, **pending.extra)
    _ssm_lengths(batch, None)
    others = [rid for s, rid in enumerate(batch.ids) if s not in again]
    batch.restore(after, others)
    batch.layout.lengths = [b + k for b, k in zip(pending.base, kept)]
    batch.layout.changed()


def _ssm_lengths(batch: BatchCache, widths: list[int] | None) -> None:
    for layer in batch.layers:
        if isinstance(layer, ArrayRows):
            layer.lengths = None if widths is None else mx.array(widths)


def _read_logprobs(pending: PendingVerify, tokens: list[list[int]], kept: list[int]
                   ) -> list[list[TokenLogprob | None]]:
    result, width = pending.result, len(tokens[0]) if tokens else 0
    chosen = result.logprobs.tolist() if result.logprobs is not None else None
    top_ids = result.top_ids.tolist() if result.top_ids is not None else None
    top_vals = result.top_logprobs.tolist() if result.top_logprobs is not None else None
    out = []
    for s, row in enumerate(pending.rows):
        want = row.wanted_top
        if chosen is None or want < 0:
            out.append([None] * kept[s])
            continue
        out.append([TokenLogprob(tokens[s][j], chosen[s * width + j],
                                 list(zip(top_ids[s * width + j][:want],
                                          top_vals[s * width + j][:want]))
                                 if want and top_ids else [])
                    for j in range(kept[s])])
    return out
