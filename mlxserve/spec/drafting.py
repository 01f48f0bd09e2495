"""What the two model-backed proposers (draft model, MTP head) share: their own rows in
one engine ``BatchCache`` (cache/batch_kv.py) and the choice of each drafted token.

``DraftRows`` keeps, per request, how many positions of its cache are kept (``kept``) and
where this step's drafting began (``mark``): a step writes a catch-up (what the cache
lacks of the history) and then one token per drafted position for every proposing row;
rows of the batch that do not propose this step ride along (their inputs are ignored and
their lengths do not move). ``commit`` keeps the catch-up plus the accepted drafts whose
own forward ran (the last accepted draft is fed at the next step, with the target's
token after it), then trims the rest: attention caches only, so every layer can be cut
per row.

``choose`` picks a token per row from draft logits: argmax for greedy rows; for sampled
rows a draw from the temperature-scaled softmax, whose distribution is returned for the
engine's rejection rule (any draft distribution keeps the output the target's).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import mlx.core as mx

from mlxserve.cache.batch_kv import BatchCache
from mlxserve.spec.proposer import NO_PROPOSAL, Proposal, ProposalRow


@dataclass
class RowState:
    kept: int = 0  # positions of the history the cache holds and keeps
    mark: int = 0  # cache length after this step's catch-up
    drafted: int = 0  # drafted positions whose forward ran after the catch-up


class DraftRows:
    """Rows of one proposer's own batch cache."""

    def __init__(self, prototype: list):
        self.prototype = prototype
        self.batch = BatchCache(prototype)
        self.rows: dict[str, RowState] = {}

    def join(self, request_id: str, caches: list, length: int, delta: int = 0) -> RowState:
        """A request's single-stream caches (``length`` positions) become a row."""
        self.leave(request_id)
        self.batch.append(request_id, caches, length, mx.zeros((1,), mx.uint32), delta)
        self.rows[request_id] = RowState(kept=length, mark=length)
        return self.rows[request_id]

    def leave(self, request_id: str) -> None:
        if self.rows.pop(request_id, None) is not None:
            self.batch.remove(request_id)

    def begin(self, request_id: str) -> RowState:
        """Before a step: the row's cache holds exactly its kept positions."""
        state = self.rows[request_id]
        extra = self.batch.length(request_id) - state.kept
        if extra > 0:
            self.batch.trim(request_id, extra)
        state.drafted = 0
        return state

    def advance(self, widths: dict[str, int]) -> None:
        """Rows keep the given number of tokens the last forward wrote (others none)."""
        by_width: dict[int, list[str]] = {}
        for rid, width in widths.items():
            by_width.setdefault(width, []).append(rid)
        for width, ids in by_width.items():
            self.batch.advance(width, ids)

    def commit(self, request_id: str, accepted: int) -> None:
        state = self.rows.get(request_id)
        if state is None:
            return
        state.kept = state.mark + min(accepted, state.drafted)
        self.begin(request_id)


def choose(logits: mx.array, rows: Sequence[ProposalRow], key: mx.array
           ) -> tuple[mx.array, mx.array | None]:
    """(B, V) draft logits → (B,) tokens and, when some row samples, (B, V) the
    distributions they were drawn from (greedy rows: argmax, their row unused)."""
    greedy = mx.argmax(logits, axis=-1)
    if all(r.sampling.greedy for r in rows):
        return greedy, None
    temps = mx.array([1.0 if r.sampling.greedy else float(r.sampling.temperature)
                      for r in rows])[:, None]
    scaled = logits.astype(mx.float32) / temps
    drawn = mx.random.categorical(scaled, key=key)
    is_greedy = mx.array([r.sampling.greedy for r in rows])
    return mx.where(is_greedy, greedy, drawn), mx.softmax(scaled, axis=-1)


def fit_vocab(logits: mx.array, width: int) -> mx.array:
    """Draft logits cut or padded (with -inf) to the target's vocabulary width."""
    have = logits.shape[-1]
    if have == width:
        return logits
    if have > width:
        return logits[..., :width]
    pad = mx.full(logits.shape[:-1] + (width - have,), -mx.inf, logits.dtype)
    return mx.concatenate([logits, pad], axis=-1)


def proposals(rows: Sequence[ProposalRow], drafted: list[mx.array],
              probs: list[mx.array | None]) -> list[Proposal]:
    """Per-position (B,) tokens and (B, V) distributions → one Proposal per row (one
    host read-back for the whole step)."""
    if not drafted:
        return [NO_PROPOSAL for _ in rows]
    tokens = mx.stack(drafted, axis=1)  # (B, steps)
    table = tokens.tolist()
    stacked = None if probs[0] is None else mx.stack(probs, axis=1)  # (B, steps, V)
    out = []
    for b, row in enumerate(rows):
        row_probs = None if row.sampling.greedy or stacked is None else stacked[b, :row.k]
        out.append(Proposal([int(t) for t in table[b][:row.k]], row_probs))
    return out


class KeySequence:
    """Random keys for drafted samples, one per drafted position (deterministic from a
    seed, so a run's proposals repeat)."""

    def __init__(self, seed: int = 0):
        self._key = mx.random.key(seed)

    def next(self) -> mx.array:
        self._key, key = mx.random.split(self._key)
        return key
