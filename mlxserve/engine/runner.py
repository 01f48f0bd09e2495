"""Runs the scheduled steps on the model (MLX, engine thread only).

The step contract: ``launch(plan)`` builds this step's graph and starts it
(``mx.async_eval``); ``collect(leave)`` reads back every launched step but the newest
``leave`` ones. ``run(plan)`` = launch, then collect the step before (pipelined as
``stream_generate``: the device computes step t while the host reads back t-1). A decode
step's inputs are the previous step's still-lazy tokens, so nothing waits in between.

Prefill runs per request on the request's own caches (engine/prefill.py), or for several
whole short prompts in one forward into a new batch (bucketed: groups of powers of two).
Decode runs every decoding row in ``BatchCache`` objects (cache/batch_kv.py), one forward
each: a request joins a batch by having its own caches copied into a free slot, leaves by
a one-row move. Rows join the first batch whose buffers would not hold much more than its
rows' tokens (so one long row does not pad a hundred short ones), else start their own.

Structured outputs: a constrained row's token mask depends on its previous token, so a
step with such rows starts in two parts: ``launch`` starts the forwards (async_eval of the
logits); ``collect``, after reading back the previous step, commits those tokens to the
constraints, fills the masks on the CPU, then starts the masked sampling. Steps without
constrained rows sample in the same graph (they pay nothing).

Failures stay with the rows that caused them: a prefill, a group prefill, a batch's
decode, each is built, started and read back under its own guard; a failure fails only
the rows of that piece (``StepFailure``), the others go on.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

import mlx.core as mx
import numpy as np

from mlxserve.cache.batch_kv import BatchCache
from mlxserve.engine.batch_membership import BatchMembership
from mlxserve.engine.model_step import forward, forward_with_hidden
from mlxserve.engine.penalties import PenaltyTable
from mlxserve.engine.pending import (MaskedSample, Pending, TokenOutput, read_back,
                                     result_arrays)
from mlxserve.engine.prefill import prefill_chunk, prefill_together, split_groups
from mlxserve.engine.prefix import seed_caches, seeded_length
from mlxserve.engine.request import GenerateRequest
from mlxserve.engine.row import Row
from mlxserve.engine.sampler import RowSampler, SampleResult, SamplingCache, sample
from mlxserve.engine.scheduler import PrefillChunk, StepPlan
from mlxserve.engine.sparse_prefill import prefill_kept, read_draft
from mlxserve.engine.verify import PendingVerify, launch_verify, settle_verify
from mlxserve.errors import InvalidRequest

log = logging.getLogger(__name__)
MERGE_FLOOR_TOKENS = 1 << 16  # batches this small always merge (padding is cheap there)


@dataclass
class StepFailure:
    """A request whose work raised in this step (the engine finishes it with an error)."""

    request_id: str
    error: str


class Runner(BatchMembership):
    def __init__(self, model: Any, vocab_size: int, make_cache, stream=None,
                 merge_floor_tokens: int = MERGE_FLOOR_TOKENS):
        self.model = model
        self.vocab_size = vocab_size
        self._make_cache = make_cache
        self.make_row_cache = make_cache  # a row's own prefill caches (engine/prefix.py)
        self._prototype: list | None = None
        self.merge_floor_tokens = merge_floor_tokens
        self.stream = stream if stream is not None else mx.new_stream(mx.default_device())
        self.on_cpu = self.stream.device == mx.cpu  # masks: additive on a CPU, packed on a GPU
        self.rows: dict[str, Row] = {}
        self.batches: list[BatchCache] = []  # decoding rows, one forward per batch
        self.joining: list[BatchCache] = []  # batch-prefilled rows, join at next decode
        self.launched: deque[list[Pending]] = deque()
        self.penalties = PenaltyTable(vocab_size)  # counts and biases of every row
        self.sampling = SamplingCache()  # per-batch sampling constants, by membership
        # grammar failures found while starting a masked sample; reported with the next
        # collect, so the tokens read back before them are delivered first
        self.late_failures: list[StepFailure] = []
        self.failed: set[str] = set()  # requests whose grammar failure was reported
        self.keep_final_kv = False  # rows leaving a batch keep a copy of their KV
        self._orphans: dict[str, Any] = {}  # preempted request id -> its constraint
        self.scorer = None  # SpecPrefill's DraftScorer, when a draft model is loaded
        self.selection = None  # its spec.specprefill.select.Selection
        self.selections: list[tuple[str, int]] = []  # (request id, kept tokens) this step
        self.want_hidden = False  # decode steps keep each row's last hidden state (MTP)
        self.bucket_prefill = False  # pad prefill forwards to bounded shapes

    # ---- request lifecycle --------------------------------------------------------
    def add(self, request: GenerateRequest, seed: int, prefix=None, sparse=None,
            resumed: int = 0) -> None:
        """``prefix``: a prefix-cache match whose positions the row's caches start with;
        ``sparse``: a ``SparseRow`` when the prefill is SpecPrefill's. ``resumed``: a
        preempted request comes back; the last ``resumed`` of its ``prompt_tokens`` are
        the output it had produced (its sampler goes on from there)."""
        prompt = request.prompt_tokens[:len(request.prompt_tokens) - resumed]
        sampler = RowSampler(request.sampling, prompt, self.vocab_size, seed, self.penalties,
                             output_tokens=request.prompt_tokens[len(prompt):])
        self._orphans.pop(request.request_id, None)
        prompt = mx.array(request.prompt_tokens, dtype=mx.uint32)
        cache = self.make_row_cache()
        seed_caches(cache, prefix)
        self.rows[request.request_id] = Row(request, sampler, cache, prompt, sparse=sparse)

    def release(self, request_id: str, preempted: bool = False) -> None:
        """Forget a request; its row leaves its batch at the next launch. ``preempted``: it
        comes back later, so tokens of it still in flight advance its grammar as read back."""
        row = self.rows.pop(request_id, None)
        self._orphans.pop(request_id, None)
        if row is not None:
            row.sampler.release()
            if preempted and row.request.constraint is not None:
                self._orphans[request_id] = row.request.constraint
        self.failed.discard(request_id)
        if not self.rows:
            self.batches, self.joining = [], []

    def reset(self) -> None:
        """Drop every row, batch and in-flight result."""
        for row in self.rows.values():
            row.sampler.release()
        self.rows.clear()
        self.batches, self.joining = [], []
        self.launched.clear()
        self.sampling = SamplingCache()
        self.late_failures, self.failed = [], set()
        self._orphans.clear()

    def hidden(self, request_id: str):
        """The row's last-layer hidden state from its latest decode (``want_hidden``)."""
        row = self.rows.get(request_id)
        return None if row is None else row.hidden

    @property
    def has_pending(self) -> bool:
        return any(self.launched)

    @property
    def prototype(self) -> list:
        if self._prototype is None:
            self._prototype = self._make_cache()
        return self._prototype

    def nbytes(self) -> int:
        """Bytes the decode batches' buffers hold."""
        return sum(b.nbytes for b in self.batches + self.joining)

    # ---- the step -----------------------------------------------------------------
    def run(self, plan: StepPlan, drafts: dict | None = None
            ) -> tuple[list[TokenOutput], list[StepFailure]]:
        failures = self.launch(plan, drafts)
        outputs, late = self.collect(leave=0 if plan.read_now else 1)
        return outputs, failures + late

    def launch(self, plan: StepPlan, drafts: dict | None = None) -> list[StepFailure]:
        """Build and start one step; returns the rows that failed while doing so.
        ``drafts``: request id -> spec.proposer.Proposal, for the rows ``plan`` gives more
        than one token (a verify step: read it back before the next launch)."""
        failures: list[StepFailure] = []
        started: list[Pending] = []
        with mx.stream(self.stream):
            decode_ids = [i for i in plan.decodes if i in self.rows]
            self._settle(decode_ids)
            wanted = {rid: plan.decode_tokens.get(rid, 1) for rid in decode_ids}
            for batch in list(self.batches):
                self._guarded(batch.ids, lambda b=batch: self._decode(b, wanted, drafts or {}),
                              started, failures)
            self._launch_prefills(plan, started, failures)
        self.launched.append(self._start(started, failures))
        return failures

    def collect(self, leave: int = 0) -> tuple[list[TokenOutput], list[StepFailure]]:
        """Read back launched steps, oldest first, keeping the newest ``leave`` in flight.
        Each step's tokens advance the grammars before the next step's masked samples
        start: those of a step still in flight here, or (read now) of the one read next."""
        outputs: list[TokenOutput] = []
        failures, self.late_failures = self.late_failures, []
        while len(self.launched) > leave:
            step = self.launched.popleft()
            unstarted = [p for p in step if p.masked is not None]
            if unstarted:  # read at once after its launch: its masks follow what came back
                failures += self._start_masked(unstarted)
            read: list[TokenOutput] = []
            for pending in step:
                try:
                    read += self._read_back(pending)
                except Exception as e:  # a lazy failure: only this piece's rows
                    log.exception("reading back a step failed")
                    failures += self._fail_rows(pending.ids, e)
            self._commit(read)
            outputs += read
        masked = [p for step in self.launched for p in step if p.masked is not None]
        if masked:
            self.late_failures = self._start_masked(masked)
        return outputs, failures

    def _read_back(self, pending) -> list[TokenOutput]:
        if not isinstance(pending, PendingVerify):
            return read_back(pending)
        with mx.stream(self.stream):
            outcomes = settle_verify(self.model, pending)
        return [TokenOutput(o.request_id, t, lp) for o in outcomes
                for t, lp in zip(o.tokens, o.logprobs)]

    # ---- structured outputs: masked sampling --------------------------------------
    def _sample(self, ids: list[str], logits: mx.array, rows: list[Row],
                assign: Callable[[mx.array], None]) -> Pending:
        """Sample now, or (a constrained row among ``rows``) once the masks are known."""
        pending = Pending(list(ids), None, [r.wanted_top for r in rows])
        if any(r.request.constraint is not None for r in rows):
            pending.masked = MaskedSample(logits, rows, assign)
            return pending
        pending.result = sample(logits, [r.sampler for r in rows], cache=self.sampling)
        assign(pending.result.tokens)
        return pending

    def _commit(self, outputs: list[TokenOutput]) -> None:
        """Advance each constrained request's grammar over the tokens it emitted."""
        for out in outputs:
            row = self.rows.get(out.request_id)
            constraint = (row.request.constraint if row is not None
                          else self._orphans.get(out.request_id))
            if constraint is not None:
                constraint.commit(out.token_id)

    def _start_masked(self, pending: list[Pending]) -> list[StepFailure]:
        from mlxserve.structured.masks import additive_mask, fill_masks

        failures = []
        for p in pending:
            work, p.masked = p.masked, None
            constraints = [r.request.constraint for r in work.rows]
            try:
                with mx.stream(self.stream):
                    vocab = work.logits.shape[-1]
                    bits = fill_masks(constraints, (vocab + 31) // 32)
                    allowed = mx.array(additive_mask(bits, vocab) if self.on_cpu
                                       else bits.view(np.uint32))
                    p.result = sample(work.logits, [r.sampler for r in work.rows], allowed,
                                      cache=self.sampling)
                    work.assign(p.result.tokens)
                    mx.async_eval(result_arrays(p.result))
            except Exception as e:  # only this piece's rows
                log.exception("starting a masked sample failed")
                failures += self._fail_rows(p.ids, e)
                p.ids, p.result = [], SampleResult(mx.array([], dtype=mx.uint32), None, None,
                                                   None)
                continue
            for rid, c in zip(p.ids, constraints):
                if c is not None and c.error is not None and rid not in self.failed:
                    self.failed.add(rid)
                    failures.append(StepFailure(rid, c.error))
        return failures

    def _start(self, started: list[Pending], failures: list[StepFailure]) -> list[Pending]:
        """``async_eval`` each piece alone, so an evaluation error names its own rows."""
        kept = []
        for pending in started:
            try:
                mx.async_eval(pending.arrays())
                kept.append(pending)
            except Exception as e:
                log.exception("starting a step failed")
                failures += self._fail_rows(pending.ids, e)
        return kept

    def _guarded(self, ids: list[str], build, started: list, failures: list) -> None:
        ids = list(ids)
        try:
            pending = build()
        except Exception as e:  # one piece's failure must not stop the step
            log.debug("building a step piece failed", exc_info=True)
            failures += self._fail_rows(ids, e)
            return
        if pending is not None:
            started.append(pending)

    def _fail_rows(self, ids: list[str], error: Exception) -> list[StepFailure]:
        """Forget the failed rows, and every row sharing a batch (buffers) with them."""
        doomed = list(ids)
        for rid in ids:
            row = self.rows.get(rid)
            if row is not None and row.batch is not None:
                doomed += [r for r in row.batch.ids if r not in doomed]
                self.batches = [b for b in self.batches if b is not row.batch]
                self.joining = [b for b in self.joining if b is not row.batch]
        for rid in doomed:
            row = self.rows.pop(rid, None)
            if row is not None:
                row.sampler.release()
        return [StepFailure(rid, _describe(error)) for rid in doomed]

    # ---- prefill ------------------------------------------------------------------
    def _launch_prefills(self, plan: StepPlan, started: list, failures: list) -> None:
        chunks = [c for c in plan.prefills if c.request_id in self.rows]
        whole = [c for c in chunks if self._whole_prompt_text_chunk(c)]
        groups = [] if len(whole) < 2 else split_groups(whole, lambda c: len(
            self.rows[c.request_id].request.prompt_tokens)) if self.bucket_prefill else [whole]
        for ids in ([c.request_id for c in g] for g in groups):
            self._guarded(ids, lambda ids=ids: self._prefill_together(ids), started, failures)
        grouped = {c.request_id for g in groups for c in g}
        for chunk in chunks:
            if chunk.request_id not in grouped:
                build = self._prefill_sparse if self.rows[chunk.request_id].sparse else \
                    self._prefill
                self._guarded([chunk.request_id], lambda c=chunk, b=build: b(c),
                              started, failures)

    def _whole_prompt_text_chunk(self, chunk: PrefillChunk) -> bool:
        row = self.rows[chunk.request_id]
        # a request wanting prompt logprobs has its own forward, so its logits are at most
        # one chunk (a padded group's would be rows x longest x vocab)
        # a row whose own caches hold the positions before the chunk (a prefix-cache hit)
        # joins with them (attention-only models: engine/prefix.py seeded_length)
        starts_right = chunk.start == 0 or chunk.start == seeded_length(row)
        return (starts_right and chunk.is_last and row.request.multimodal is None
                and row.request.prompt_logprobs is None and row.sparse is None)

    def _prefill(self, chunk: PrefillChunk) -> Pending | None:
        row = self.rows[chunk.request_id]
        logits = prefill_chunk(self.model, row, chunk, self.bucket_prefill)
        if logits is None:
            return None
        prompt_lp = {} if row.request.prompt_logprobs is None else {chunk.request_id:
                                                                      row.prompt_lp}
        row.prompt_lp = []
        pending = self._sample([chunk.request_id], logits, [row],
                               lambda t: setattr(row, "last_token", t))
        pending.prompt_logprobs = prompt_lp
        return pending

    def _prefill_sparse(self, chunk: PrefillChunk) -> Pending | None:
        """A SpecPrefill chunk: the draft's (the last scores: ``selections``), or the
        target's kept tokens (the last joins decoding as a one-row batch)."""
        rid, row = chunk.request_id, self.rows[chunk.request_id]
        if chunk.draft:
            kept = read_draft(self.scorer, row, chunk, self.selection)
            if kept is not None:
                self.selections.append((rid, kept))
            return None
        logits = prefill_kept(self.model, self.prototype, row, chunk)
        if logits is None:
            return None
        batch = row.sparse.batch
        row.cache, row.batch, row.sparse.batch = None, batch, None
        self.joining.append(batch)
        return self._sample([rid], logits, [row], lambda t: setattr(batch, "tokens", t))

    def take_selections(self) -> list[tuple[str, int]]:
        taken, self.selections = self.selections, []
        return taken

    def _prefill_together(self, ids: list[str]) -> Pending:
        rows = [self.rows[i] for i in ids]
        batch, logits = prefill_together(self.model, self.prototype, rows,
                                         self.bucket_prefill)
        for r in rows:
            r.cache, r.batch = None, batch
        self.joining.append(batch)
        return self._sample(ids, logits, rows, lambda t: setattr(batch, "tokens", t))

    # ---- decode -------------------------------------------------------------------
    def _decode(self, batch: BatchCache, wanted: dict[str, int], drafts: dict):
        keep = [rid for rid in batch.ids if rid in wanted]
        if not keep:
            return None
        rows = [self.rows[i] for i in batch.ids]
        extra = {}
        if any(r.rope_delta for r in rows):  # M-RoPE rows: cache offset + their delta
            extra["rope_deltas"] = [r.rope_delta for r in rows]
        if not extra and any(wanted[rid] > 1 and rid in drafts for rid in keep) and not any(
                r.request.constraint is not None for r in rows):
            return self._verify(batch, rows, wanted, drafts, extra)
        if len(keep) < batch.size:
            return self._decode_some(batch, keep, extra)
        logits = self._forward(batch, rows, extra)
        batch.advance(1)
        return self._sample(batch.ids, logits, rows, lambda t: setattr(batch, "tokens", t))

    def _decode_some(self, batch: BatchCache, keep: list[str], extra: dict) -> Pending:
        """Rows that skip this step (no token budget left) ride along: their results are
        dropped, their lengths stay and their SSM state is restored."""
        snapshot = batch.snapshot()
        computing = set(keep)  # riders' hidden states stay those of their last decode
        logits = self._forward(batch, [self.rows[i] if i in computing else None
                                       for i in batch.ids], extra)
        slots = mx.array([batch.slot(rid) for rid in keep], dtype=mx.int32)
        kept = set(keep)
        batch.restore(snapshot, [rid for rid in batch.ids if rid not in kept])
        batch.advance(1, keep)
        previous = batch.tokens

        def assign(tokens: mx.array) -> None:
            previous[slots] = tokens
            batch.tokens = previous

        return self._sample(keep, logits[slots], [self.rows[i] for i in keep], assign)

    def _forward(self, batch: BatchCache, rows: list[Row], extra: dict) -> mx.array:
        """One decode token per row: (B, V) logits; with ``want_hidden`` (an MTP
        proposer) each row also keeps its last hidden state (``Row.hidden``)."""
        if not self.want_hidden or extra:
            return forward(self.model, batch.tokens[:, None], batch.layers, **extra)[:, -1, :]
        logits, hidden = forward_with_hidden(self.model, batch.tokens[:, None], batch.layers)
        for slot, row in enumerate(rows):
            if row is not None:
                row.hidden = hidden[slot, -1]
        return logits[:, -1, :]

    def _verify(self, batch: BatchCache, rows: list[Row], wanted: dict[str, int],
                drafts: dict, extra: dict) -> PendingVerify:
        """Rows with proposals check them in one forward (engine/verify.py)."""
        widths = [wanted.get(rid, 0) for rid in batch.ids]
        proposals = [drafts.get(rid) for rid in batch.ids]
        tokens = [p.tokens[:w - 1] if p is not None and w > 1 else []
                  for p, w in zip(proposals, widths)]
        widths = [1 + len(t) if w else 0 for t, w in zip(tokens, widths)]
        probs = [p.probs[:len(t)] if p is not None and p.probs is not None and t else None
                 for p, t in zip(proposals, tokens)]
        return launch_verify(self.model, batch, rows, widths, tokens, probs, extra,
                             self.want_hidden)

    # ---- warm-up ------------------------------------------------------------------
    def warm_up(self) -> None:
        """Run every batch path once on tiny prompts, then forget it all (MLX's CUDA
        back-end compiles some kernels on first use, which takes seconds)."""
        from mlxserve.engine.warm_up import warm_up

        warm_up(self)


def _describe(error: Exception) -> str:
    if isinstance(error, InvalidRequest):
        return error.message
    return f"{type(error).__name__}: {error}"
