"""The draft-model proposer: a smaller model with the target's vocabulary drafts k tokens
per row, greedily (or sampled with the row's temperature, returning the distribution for
the rejection rule), all rows in one batched draft forward per drafted position.

The draft keeps its own rows in an engine ``BatchCache`` (spec/drafting.py): a request
joins with a single-stream prefill of its history but the newest token (in chunks, on
mlx-lm caches, then copied into a slot); each step feeds what the cache lacks (the newest
token, the last accepted draft before it, or more after skipped steps: right-padded, each
row keeping only its own) and then one drafted token per position. A row that fell far
behind (speculation backed off for many steps) leaves and rejoins with a fresh prefill.
On commit the rejected drafts are trimmed per row. The draft's layers must all be
trimmable (attention): an SSM / hybrid draft is refused at start-up.
"""

from __future__ import annotations

from typing import Any, Sequence

import mlx.core as mx
from mlx_lm.models.cache import make_prompt_cache

from mlxserve.config import SpeculativeConfig
from mlxserve.errors import ModelLoadError
from mlxserve.spec.drafting import DraftRows, KeySequence, choose, fit_vocab, proposals
from mlxserve.spec.proposer import Proposal, ProposalRow

PREFILL_CHUNK = 512  # tokens per draft prefill forward
CATCH_UP_MAX = 8  # more missing tokens than this: the row rejoins with a prefill


class DraftProposer:
    method = "draft_model"
    needs_hidden = False

    def __init__(self, model: Any, vocab_size: int, seed: int = 0):
        self.model = model
        self.vocab_size = vocab_size  # the target's logits width (proposal probs match it)
        self.rows = DraftRows(make_prompt_cache(model))
        self.keys = KeySequence(seed)

    def propose(self, rows: Sequence[ProposalRow]) -> list[Proposal]:
        if not rows:
            return []
        for row in rows:
            self._settle(row)
        steps = max(row.k for row in rows)
        tokens, probs = [], []
        token, q = self._catch_up(rows)
        tokens.append(token)
        probs.append(q)
        for _ in range(steps - 1):
            token, q = self._draft_one(rows, token)
            tokens.append(token)
            probs.append(q)
        return proposals(rows, tokens, probs)

    def commit(self, request_id: str, accepted: Sequence[int]) -> None:
        self.rows.commit(request_id, len(accepted))

    def drop(self, request_id: str) -> None:
        self.rows.leave(request_id)

    # ---- a row's cache follows its history ------------------------------------------
    def _settle(self, row: ProposalRow) -> None:
        state = self.rows.rows.get(row.request_id)
        if state is not None:
            state = self.rows.begin(row.request_id)
        if state is None or not 0 < len(row.tokens) - state.kept <= CATCH_UP_MAX:
            self._prefill(row)

    def _prefill(self, row: ProposalRow) -> None:
        """Join with the history but its newest token in the draft's cache."""
        history = list(row.tokens[:-1])
        caches = make_prompt_cache(self.model)
        for start in range(0, len(history), PREFILL_CHUNK):
            chunk = mx.array(history[start:start + PREFILL_CHUNK], dtype=mx.uint32)[None]
            self.model(chunk, cache=caches)
            mx.eval([c.state for c in caches])
        self.rows.join(row.request_id, caches, len(history))

    # ---- the drafting forwards ------------------------------------------------------
    def _batch_inputs(self, pending: dict[str, list[int]]) -> tuple[mx.array, mx.array]:
        """(B, W) right-padded inputs for every slot (riders: one ignored token) and (B,)
        the index of each slot's last real input."""
        slots = [pending.get(rid, [0]) for rid in self.rows.batch.ids]
        width = max(len(p) for p in slots)
        padded = mx.array([p + [0] * (width - len(p)) for p in slots], dtype=mx.uint32)
        return padded, mx.array([len(p) - 1 for p in slots], dtype=mx.int32)

    def _slot_rows(self, rows: Sequence[ProposalRow]) -> mx.array:
        return mx.array([self.rows.batch.slot(r.request_id) for r in rows], dtype=mx.int32)

    def _catch_up(self, rows: Sequence[ProposalRow]) -> tuple[mx.array, mx.array | None]:
        """Feed each proposing row what its cache lacks; the first drafted token."""
        pending = {r.request_id: list(r.tokens[self.rows.rows[r.request_id].kept:])
                   for r in rows}
        inputs, last = self._batch_inputs(pending)
        logits = self.model(inputs, cache=self.rows.batch.layers)
        logits = mx.take_along_axis(logits, last[:, None, None], axis=1)[:, 0, :]
        self.rows.advance({rid: len(p) for rid, p in pending.items()})
        for rid, p in pending.items():
            state = self.rows.rows[rid]
            state.mark = state.kept + len(p)
        picked = fit_vocab(logits[self._slot_rows(rows)], self.vocab_size)
        return choose(picked, rows, self.keys.next())

    def _draft_one(self, rows: Sequence[ProposalRow], previous: mx.array
                   ) -> tuple[mx.array, mx.array | None]:
        """One more drafted position: the previous drafts in, the next tokens out."""
        batch, slots = self.rows.batch, self._slot_rows(rows)
        inputs = mx.zeros((batch.size,), dtype=mx.uint32)
        inputs[slots] = previous.astype(mx.uint32)
        logits = self.model(inputs[:, None], cache=batch.layers)[:, -1, :]
        self.rows.advance({r.request_id: 1 for r in rows})
        for r in rows:
            self.rows.rows[r.request_id].drafted += 1
        return choose(fit_vocab(logits[slots], self.vocab_size), rows, self.keys.next())


def make_draft_proposer(config: SpeculativeConfig, context) -> DraftProposer:
    """``{"method": "draft_model", "model": SOURCE}``: the draft (vocabulary checked), shared
    with SpecPrefill's scorer when it names the same source (its own caches here)."""
    from mlxserve.models.draft import logits_width, shared_draft

    target = context.target
    draft = shared_draft(config.model, target, context.model_config)
    if not draft.capabilities.cache_trimmable:
        raise ModelLoadError(f"the draft model {draft.name} has layers whose cache cannot "
                             "be trimmed (SSM / gated delta): use an attention-only draft")
    return DraftProposer(draft.model, logits_width(target))
