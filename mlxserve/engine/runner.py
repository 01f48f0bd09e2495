"""Runs the scheduled steps on the model (MLX, engine thread only).

The step contract: ``launch(plan)`` builds this step's graph and starts it
(``mx.async_eval``); ``collect(leave)`` reads back every launched step but the newest
``leave`` ones. ``run(plan)`` = launch, then collect the step before (pipelined as
``stream_generate``: the device computes step t while the host reads back t-1). A decode
step's inputs are the previous step's still-lazy tokens, so nothing waits in between.

Prefill runs per request on the request's own caches (engine/prefill.py), or for several
whole short prompts in one forward into a new batch. Decode runs every decoding row in
``BatchCache`` objects (cache/batch_kv.py), one forward each: a request joins a batch by
having its own caches copied into a free slot, leaves by a one-row move. Rows join the
first batch whose buffers would not hold much more than its rows' tokens (so one long
row does not pad a hundred short ones); otherwise they start a batch of their own.

Structured outputs: a row whose request has a ``constraint`` needs its grammar's token mask
before its token can be sampled, and that mask depends on the row's previous token. So a
step with constrained rows is started in two parts: ``launch`` starts the forward passes
(async_eval of the logits); ``collect``, after reading back the previous step, commits
those tokens to the constraints, fills the masks on the CPU and only then starts the
masked sampling. A step without constrained rows samples in the same graph (they pay
nothing).

Failures stay with the rows that caused them: a prefill, a group prefill, a batch's
decode, each is built, started and read back under its own guard; a failure fails only
the rows of that piece (``StepFailure``), the others go on.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import mlx.core as mx
import numpy as np

from mlxserve.cache.batch_kv import BatchCache, mergeable
from mlxserve.engine.model_step import forward
from mlxserve.engine.penalties import PenaltyTable
from mlxserve.engine.prefill import prefill_chunk, prefill_together
from mlxserve.engine.prefix import final_kv, row_kv, seed_caches
from mlxserve.engine.prompt_logprobs import read_prompt_logprobs
from mlxserve.engine.request import GenerateRequest, SamplingParams, StopParams, TokenLogprob
from mlxserve.engine.row import Row
from mlxserve.engine.sampler import RowSampler, SampleResult, SamplingCache, sample
from mlxserve.engine.scheduler import PrefillChunk, StepPlan
from mlxserve.errors import InvalidRequest

log = logging.getLogger(__name__)
MERGE_FLOOR_TOKENS = 1 << 16  # batches this small always merge (padding is cheap there)


@dataclass
class TokenOutput:
    """One sampled token of one request, read back from the device."""

    request_id: str
    token_id: int
    logprob: TokenLogprob | None = None
    prompt_logprobs: list[TokenLogprob | None] | None = None  # with a request's first token


@dataclass
class StepFailure:
    """A request whose work raised in this step (the engine finishes it with an error)."""

    request_id: str
    error: str


@dataclass
class _MaskedSample:
    """A sample that waits for its rows' grammar masks (filled while the forward runs)."""

    logits: mx.array
    rows: list[Row]
    assign: Callable[[mx.array], None]  # hands the sampled tokens to their batch / row


@dataclass
class _Pending:
    ids: list[str]
    result: SampleResult | None
    want_logprobs: list[int] = field(default_factory=list)  # top-k wanted per row, -1 = none
    prompt_logprobs: dict[str, list] = field(default_factory=dict)  # id -> its chunks
    masked: _MaskedSample | None = None  # set until the masked sample is started

    def arrays(self) -> list:
        """What to start evaluating now (a masked sample: its logits only, for now)."""
        chunks = [c for cs in self.prompt_logprobs.values() for c in cs]
        lp = [a for c in chunks for a in c.arrays()]
        if self.masked is not None:
            return [self.masked.logits] + lp
        return _result_arrays(self.result) + lp


class Runner:
    def __init__(self, model: Any, vocab_size: int, make_cache, stream=None,
                 merge_floor_tokens: int = MERGE_FLOOR_TOKENS):
        self.model = model
        self.vocab_size = vocab_size
        self._make_cache = make_cache
        self._prototype: list | None = None
        self.merge_floor_tokens = merge_floor_tokens
        self.stream = stream if stream is not None else mx.new_stream(mx.default_device())
        self.rows: dict[str, Row] = {}
        self.batches: list[BatchCache] = []  # decoding rows, one forward per batch
        self.joining: list[BatchCache] = []  # batch-prefilled rows, join at next decode
        self.launched: deque[list[_Pending]] = deque()
        self.penalties = PenaltyTable(vocab_size)  # counts and biases of every row
        self.sampling = SamplingCache()  # per-batch sampling constants, by membership
        # grammar failures found while starting a masked sample; reported with the next
        # collect, so the tokens read back before them are delivered first
        self.late_failures: list[StepFailure] = []
        self.failed: set[str] = set()  # requests whose grammar failure was reported
        self.keep_final_kv = False  # rows leaving a batch keep a copy of their KV

    # ---- request lifecycle --------------------------------------------------------
    def add(self, request: GenerateRequest, seed: int, prefix=None) -> None:
        """``prefix``: a prefix-cache match whose positions the row's caches start with."""
        sampler = RowSampler(request.sampling, request.prompt_tokens, self.vocab_size, seed,
                             self.penalties)
        prompt = mx.array(request.prompt_tokens, dtype=mx.uint32)
        cache = self._make_cache()
        seed_caches(cache, prefix)
        self.rows[request.request_id] = Row(request, sampler, cache, prompt)

    def kv_of(self, request_id: str, length: int) -> list | None:
        """Views of a row's first ``length`` positions per layer (None: it has fewer)."""
        row = self.rows.get(request_id)
        return None if row is None else row_kv(row, length)

    def release(self, request_id: str) -> None:
        """Forget a request; its row leaves its batch at the next launch."""
        row = self.rows.pop(request_id, None)
        if row is not None:
            row.sampler.release()
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
    def run(self, plan: StepPlan) -> tuple[list[TokenOutput], list[StepFailure]]:
        failures = self.launch(plan)
        outputs, late = self.collect(leave=1)
        return outputs, failures + late

    def launch(self, plan: StepPlan) -> list[StepFailure]:
        """Build and start one step; returns the rows that failed while doing so."""
        failures: list[StepFailure] = []
        started: list[_Pending] = []
        with mx.stream(self.stream):
            decode_ids = [i for i in plan.decodes if i in self.rows]
            self._settle(decode_ids)
            wanted = set(decode_ids)
            for batch in list(self.batches):
                self._guarded(batch.ids, lambda b=batch: self._decode(b, wanted), started,
                              failures)
            self._launch_prefills(plan, started, failures)
        self.launched.append(self._start(started, failures))
        return failures

    def collect(self, leave: int = 0) -> tuple[list[TokenOutput], list[StepFailure]]:
        """Read back launched steps, oldest first, keeping the newest ``leave`` in flight."""
        outputs: list[TokenOutput] = []
        failures, self.late_failures = self.late_failures, []
        while len(self.launched) > leave:
            for pending in self.launched.popleft():
                try:
                    outputs += _read_back(pending)
                except Exception as e:  # a lazy failure: only this piece's rows
                    log.exception("reading back a step failed")
                    failures += self._fail_rows(pending.ids, e)
        self._commit(outputs)  # also when no masked sample starts now: rows skip decodes
        masked = [p for step in self.launched for p in step if p.masked is not None]
        if masked:
            self.late_failures = self._start_masked(masked)
        return outputs, failures

    # ---- structured outputs: masked sampling --------------------------------------
    def _sample(self, ids: list[str], logits: mx.array, rows: list[Row],
                assign: Callable[[mx.array], None]) -> _Pending:
        """Sample now, or (a constrained row among ``rows``) once the masks are known."""
        pending = _Pending(list(ids), None, [r.wanted_top for r in rows])
        if any(r.request.constraint is not None for r in rows):
            pending.masked = _MaskedSample(logits, rows, assign)
            return pending
        pending.result = sample(logits, [r.sampler for r in rows], cache=self.sampling)
        assign(pending.result.tokens)
        return pending

    def _commit(self, outputs: list[TokenOutput]) -> None:
        """Advance each constrained request's grammar over the tokens it emitted."""
        for out in outputs:
            row = self.rows.get(out.request_id)
            if row is not None and row.request.constraint is not None:
                row.request.constraint.commit(out.token_id)

    def _start_masked(self, pending: list[_Pending]) -> list[StepFailure]:
        from mlxserve.structured.masks import fill_masks

        failures = []
        for p in pending:
            work, p.masked = p.masked, None
            constraints = [r.request.constraint for r in work.rows]
            try:
                with mx.stream(self.stream):
                    words = (work.logits.shape[-1] + 31) // 32
                    allowed = mx.array(fill_masks(constraints, words).view(np.uint32))
                    p.result = sample(work.logits, [r.sampler for r in work.rows], allowed,
                                      cache=self.sampling)
                    work.assign(p.result.tokens)
                    mx.async_eval(_result_arrays(p.result))
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

    def _start(self, started: list[_Pending], failures: list[StepFailure]) -> list[_Pending]:
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
        together = whole if len(whole) >= 2 else []
        if together:
            ids = [c.request_id for c in together]
            self._guarded(ids, lambda: self._prefill_together(ids), started, failures)
        for chunk in chunks:
            if chunk not in together:
                self._guarded([chunk.request_id], lambda c=chunk: self._prefill(c),
                              started, failures)

    def _whole_prompt_text_chunk(self, chunk: PrefillChunk) -> bool:
        row = self.rows[chunk.request_id]
        # a request wanting prompt logprobs has its own forward, so its logits are at most
        # one chunk (a padded group's would be rows x longest x vocab)
        return (chunk.start == 0 and chunk.is_last and row.request.multimodal is None
                and row.request.prompt_logprobs is None)

    def _prefill(self, chunk: PrefillChunk) -> _Pending | None:
        row = self.rows[chunk.request_id]
        logits = prefill_chunk(self.model, row, chunk)
        if logits is None:
            return None
        prompt_lp = {} if row.request.prompt_logprobs is None else {chunk.request_id:
                                                                      row.prompt_lp}
        row.prompt_lp = []
        pending = self._sample([chunk.request_id], logits, [row],
                               lambda t: setattr(row, "last_token", t))
        pending.prompt_logprobs = prompt_lp
        return pending

    def _prefill_together(self, ids: list[str]) -> _Pending:
        rows = [self.rows[i] for i in ids]
        batch, logits = prefill_together(self.model, self.prototype, rows)
        for r in rows:
            r.cache, r.batch = None, batch
        self.joining.append(batch)
        return self._sample(ids, logits, rows, lambda t: setattr(batch, "tokens", t))

    # ---- decode -------------------------------------------------------------------
    def _decode(self, batch: BatchCache, wanted: set[str]) -> _Pending | None:
        keep = [rid for rid in batch.ids if rid in wanted]
        if not keep:
            return None
        rows = [self.rows[i] for i in batch.ids]
        extra = {}
        if any(r.rope_delta for r in rows):  # M-RoPE rows: cache offset + their delta
            extra["rope_deltas"] = [r.rope_delta for r in rows]
        if len(keep) < batch.size:
            return self._decode_some(batch, keep, extra)
        logits = forward(self.model, batch.tokens[:, None], batch.layers, **extra)[:, -1, :]
        batch.advance(1)
        return self._sample(batch.ids, logits, rows, lambda t: setattr(batch, "tokens", t))

    def _decode_some(self, batch: BatchCache, keep: list[str], extra: dict) -> _Pending:
        """Rows that skip this step (no token budget left) ride along: their results are
        dropped, their lengths stay and their SSM state is restored."""
        snapshot = batch.snapshot()
        logits = forward(self.model, batch.tokens[:, None], batch.layers, **extra)[:, -1, :]
        slots = mx.array([batch.slot(rid) for rid in keep], dtype=mx.int32)
        kept = set(keep)
        batch.restore(snapshot, [rid for rid in batch.ids if rid not in kept])
        batch.advance(1, keep)
        previous = batch.tokens

        def assign(tokens: mx.array) -> None:
            previous[slots] = tokens
            batch.tokens = previous

        return self._sample(keep, logits[slots], [self.rows[i] for i in keep], assign)

    # ---- batch membership ---------------------------------------------------------
    def _settle(self, decode_ids: list[str]) -> None:
        """Before a decode: rows that are gone or done leave their batches; prefilled
        rows and batches join."""
        copies = []
        for batch in self.batches + self.joining:
            for rid in list(batch.ids):
                row = self.rows.get(rid)
                if row is None or row.done_decoding:
                    if row is not None and self.keep_final_kv:
                        row.final_kv = final_kv(row, start=False)  # for the prefix cache
                        copies += [a for kv in row.final_kv or [] for a in kv]
                    batch.remove(rid)
                    if row is not None:
                        row.batch = None
        if copies:  # one start for every row leaving now
            mx.async_eval(copies)
        self.batches = [b for b in self.batches if b.size]
        joining = [b for b in self.joining if b.size]
        self.joining = []
        for group in joining:
            self._place_batch(group)
        for rid in decode_ids:
            row = self.rows[rid]
            if row.batch is None and row.cache is not None and row.last_token is not None:
                self._place_row(rid, row)

    def _target(self, lengths: list[int]) -> BatchCache | None:
        for batch in self.batches:
            if mergeable(batch, lengths, floor_tokens=self.merge_floor_tokens):
                return batch
        return None

    def _place_batch(self, group: BatchCache) -> None:
        target = self._target(group.layout.lengths)
        if target is None:
            self.batches.append(group)
            return
        target.absorb(group)
        for rid in target.ids:
            self.rows[rid].batch = target

    def _place_row(self, rid: str, row: Row) -> None:
        length = len(row.request.prompt_tokens)
        target = self._target([length])
        if target is None:
            target = BatchCache(self.prototype)
            self.batches.append(target)
        target.append(rid, row.cache, length, row.last_token)
        row.cache, row.last_token, row.batch = None, None, target

    # ---- warm-up ------------------------------------------------------------------
    def warm_up(self) -> None:
        """Run every batch path once on tiny prompts, then forget it all (MLX's CUDA
        back-end compiles some kernels on first use, which takes seconds)."""
        greedy, sampled = SamplingParams(temperature=0.0), SamplingParams(
            temperature=1.0, top_k=4, top_p=0.9, min_p=0.01, seed=0)
        prompts = {"a": ([1, 2, 3], greedy), "b": ([4, 5], sampled), "c": ([6, 7, 8, 9], greedy),
                   "d": ([1, 2], greedy), "e": ([3, 4], greedy)}
        for rid, (tokens, params) in prompts.items():
            self.add(GenerateRequest(f"__warm_up_{rid}", tokens, params,
                                     StopParams(max_tokens=8)), seed=0)

        def step(decodes: str, prefills: str = "") -> None:
            plan = StepPlan(decodes=[f"__warm_up_{r}" for r in decodes])
            for r in prefills:
                n = len(prompts[r][0])
                plan.prefills.append(PrefillChunk(f"__warm_up_{r}", 0, n, is_last=True))
            _, failures = self.run(plan)
            if failures:
                raise RuntimeError(failures[0].error)

        try:
            for decodes, prefills in (("", "ab"), ("ab", "c"), ("abc", ""), ("ac", ""),
                                      ("a", ""), ("", "de"), ("de", ""), ("d", ""), ("", "")):
                step(decodes, prefills)
            self.collect()
        finally:
            self.reset()


def _read_back(pending: _Pending) -> list[TokenOutput]:
    result = pending.result
    tokens = result.tokens.tolist()
    chosen = result.logprobs.tolist() if result.logprobs is not None else None
    top_ids = result.top_ids.tolist() if result.top_ids is not None else None
    top_vals = result.top_logprobs.tolist() if result.top_logprobs is not None else None
    outputs = []
    for k, rid in enumerate(pending.ids):
        lp = None
        if chosen is not None and pending.want_logprobs[k] >= 0:
            n = pending.want_logprobs[k]
            top = list(zip(top_ids[k][:n], top_vals[k][:n])) if n and top_ids else []
            lp = TokenLogprob(tokens[k], chosen[k], top)
        chunks = pending.prompt_logprobs.get(rid)
        prompt_lp = read_prompt_logprobs(chunks) if chunks is not None else None
        outputs.append(TokenOutput(rid, tokens[k], lp, prompt_lp))
    return outputs


def _result_arrays(result: SampleResult) -> list:
    return [a for a in (result.tokens, result.logprobs, result.top_ids, result.top_logprobs)
            if a is not None]


def _describe(error: Exception) -> str:
    if isinstance(error, InvalidRequest):
        return error.message
    return f"{type(error).__name__}: {error}"
