"""The MTP proposer: a checkpoint's own multi-token-prediction head (models/mtp.py) drafts
k tokens per row from the target's last hidden state, all rows in one batched head
forward per drafted position.

A step for a row whose history ends in token t (produced by the target's hidden state h
at position p): the pair (h, t) at position p gives the first draft d1 and the head's
hidden h1; (h1, d1) at p + 1 gives d2, and so on. The head keeps its own KV rows in an
engine ``BatchCache`` (spec/drafting.py); on commit the pairs of rejected drafts are
trimmed, the accepted ones stay (with the head's hidden states in place of the target's,
which a later step does not recompute). Positions are the target's: a row that skipped
steps, or whose drafts were all accepted, gets a position delta rather than a re-run.
The prompt's pairs are not fed (the engine returns the target's hidden state for the
newest position only), so the head attends over the pairs since the request's first
decode step. Checkpoints with several MTP layers draft with the first one.
"""

from __future__ import annotations

from typing import Any, Sequence

import mlx.core as mx

from mlxserve.config import SpeculativeConfig
from mlxserve.errors import ModelLoadError
from mlxserve.spec.drafting import DraftRows, KeySequence, choose, fit_vocab, proposals
from mlxserve.spec.proposer import NO_PROPOSAL, Proposal, ProposalRow


class MTPProposer:
    method = "mtp"
    needs_hidden = True

    def __init__(self, adapter: Any, vocab_size: int, seed: int = 0):
        self.adapter = adapter
        self.vocab_size = vocab_size
        self.rows = DraftRows(adapter.make_cache()[:1])
        self.keys = KeySequence(seed)

    def propose(self, rows: Sequence[ProposalRow]) -> list[Proposal]:
        ready = [r for r in rows if r.hidden is not None and len(r.tokens) >= 2]
        drafted = dict(zip((r.request_id for r in ready), self._propose(ready))) if ready \
            else {}
        return [drafted.get(r.request_id, NO_PROPOSAL) for r in rows]

    def commit(self, request_id: str, accepted: Sequence[int]) -> None:
        self.rows.commit(request_id, len(accepted))

    def drop(self, request_id: str) -> None:
        self.rows.leave(request_id)

    def _propose(self, rows: Sequence[ProposalRow]) -> list[Proposal]:
        for row in rows:
            self._settle(row)
        slots = mx.array([self.rows.batch.slot(r.request_id) for r in rows], dtype=mx.int32)
        hidden = self._slot_values(slots, mx.stack([r.hidden for r in rows]))
        token = mx.array([r.tokens[-1] for r in rows], dtype=mx.uint32)
        tokens, probs = [], []
        for position in range(max(r.k for r in rows)):
            logits, hidden = self._forward(rows, slots, hidden, token)
            for r in rows:
                state = self.rows.rows[r.request_id]
                if position == 0:
                    state.mark = state.kept + 1
                else:
                    state.drafted += 1
            token, q = choose(fit_vocab(logits[slots], self.vocab_size), rows,
                              self.keys.next())
            tokens.append(token)
            probs.append(q)
        return proposals(rows, tokens, probs)

    def _settle(self, row: ProposalRow) -> None:
        """The row's cache holds its kept pairs; its next pair sits at the target's
        position of the hidden state (len(tokens) - 2)."""
        rid = row.request_id
        if rid in self.rows.rows:
            state = self.rows.begin(rid)
        else:
            state = self.rows.join(rid, self.adapter.make_cache()[:1], 0)
        self.rows.batch.set_delta(rid, len(row.tokens) - 2 - state.kept)

    def _slot_values(self, slots: mx.array, values: mx.array) -> mx.array:
        """(n, hidden) values of the proposing rows → (B, hidden), riders zero."""
        full = mx.zeros((self.rows.batch.size,) + values.shape[1:], values.dtype)
        full[slots] = values
        return full

    def _forward(self, rows: Sequence[ProposalRow], slots: mx.array, hidden: mx.array,
                 token: mx.array) -> tuple[mx.array, mx.array]:
        """One head step over every slot: (B, V) logits and (B, hidden) hidden states."""
        inputs = mx.zeros((self.rows.batch.size,), dtype=mx.uint32)
        inputs[slots] = token.astype(mx.uint32)
        logits, out = self.adapter.step(hidden[:, None, :], inputs[:, None],
                                        self.rows.batch.layers)
        self.rows.advance({r.request_id: 1 for r in rows})
        return logits[:, -1, :], out[:, -1, :]


def make_mtp_proposer(config: SpeculativeConfig, context) -> MTPProposer:
    """``{"method": "mtp"}``: the target checkpoint's own heads (clear error without)."""
    from mlxserve.models.draft import logits_width
    from mlxserve.models.mtp import load_mtp_adapter

    target = context.target
    if not target.capabilities.has_mtp:
        raise ModelLoadError(f"{target.name} has no multi-token-prediction heads (no mtp.* "
                             "weights or MTP layers in its config): --enable-mtp / method "
                             "'mtp' needs a checkpoint that ships them")
    return MTPProposer(load_mtp_adapter(target), logits_width(target))
