"""The engine's owner thread: load the model, then loop schedule → launch → collect → update.

All MLX work happens on this thread (MLX streams are per-thread). Other threads talk to it
only through ``submit_*`` (a queue of plain commands); outputs leave through each
request's ``sink``. Sinks that share a ``hub`` (the asyncio client's: one per event loop)
get a step's deltas in one hand-off, ``hub(list of (sink, delta))``, instead of one
thread-safe call per token.

Failures stay with their request: a bad add is answered with an error delta (with the
HTTP status the refusal means: 503 for a full queue), a failed prefill / decode / lazy
read-back finishes only the rows the runner names, and the loop itself catches anything
else, fails what was running and goes on (waiting requests keep waiting).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import queue
import random
import threading
import time
from typing import Callable

from mlxserve.config import EngineConfig, ModelConfig
from mlxserve.engine.delivery import Outbox, error_delta
from mlxserve.engine.inbox import Abort, Add, ClearPrefixCache, Shutdown
from mlxserve.engine.request import (FINISH_ABORT, FINISH_ERROR, FINISH_STOP, EngineDelta,
                                     GenerateRequest)
from mlxserve.engine.request_state import DeltaSink, RequestState, Submitted, resumable
from mlxserve.engine.scheduler import Scheduler, SeqState
from mlxserve.engine.stats import EngineStats, mlx_memory, prefix_stats
from mlxserve.engine.step_trace import StepTrace
from mlxserve.engine.stops import NullDetokenizer, OutputStream

log = logging.getLogger(__name__)
_CLEAR_CACHE_EVERY = 256  # steps, as mlx_lm.stream_generate does per tokens
_BURST_WAIT_S = 0.001  # on waking from idle, so requests sent together prefill together


class EngineCore:
    """Owns the model, scheduler and runner; lives on one thread started by ``start``."""

    def __init__(self, model_config: ModelConfig, engine_config: EngineConfig,
                 loader: Callable | None = None):
        self.model_config = model_config
        self.engine_config = engine_config
        self._loader = loader
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.thread: threading.Thread | None = None
        self.loaded = None  # LoadedModel, set on the thread before on_ready fires
        self._detokenizer_proto = None  # copied per request (models/detokenizer.py)
        self.scheduler: Scheduler | None = None
        self.max_model_len = 0
        self.stats = EngineStats()
        self._waiting: dict[str, Submitted] = {}
        self._active: dict[str, RequestState] = {}
        self._outbox = Outbox()
        self._seeds = random.Random(engine_config.seed)
        self._total_finished = 0
        self._total_aborted = 0
        self._total_generated = 0
        self._steps = 0
        self.prefix = None  # EnginePrefixCache when the model and config allow one
        self._matches: dict = {}  # request id -> its PrefixMatch, admission to _admit
        self._preempted: set[str] = set()  # active requests whose rows were dropped
        self.specprefill = None  # EngineSpecPrefill (its scorer is None without a draft)
        self.speculation = None  # engine.speculation.Speculation with --speculative-config
        self._trace = StepTrace.from_env()  # MLXSERVE_STEP_TRACE: a line per step, or none

    # ---- other threads ------------------------------------------------------------
    def start(self, on_ready: Callable[[BaseException | None], None]) -> None:
        self.thread = threading.Thread(target=self._main, args=(on_ready,),
                                       name="mlxserve-engine", daemon=True)
        self.thread.start()

    def submit_add(self, request: GenerateRequest, sink: DeltaSink) -> None:
        self.inbox.put(Add(request, sink))

    def submit_abort(self, request_id: str) -> None:
        self.inbox.put(Abort(request_id))

    def submit_shutdown(self) -> None:
        self.inbox.put(Shutdown())

    def submit_clear_prefix_cache(self, done: Callable[[int], None]) -> None:
        self.inbox.put(ClearPrefixCache(done))

    # ---- the thread ---------------------------------------------------------------
    def _main(self, on_ready) -> None:
        try:
            self._load()
        except BaseException as e:  # reported to start(); the thread ends
            on_ready(e)
            return
        on_ready(None)
        from mlx_lm.generate import wired_limit  # Metal: wire the weights, as stream_generate

        try:
            with wired_limit(self.loaded.model, [self.runner.stream]):
                self._loop()
        finally:
            self._fail_all("the engine stopped", FINISH_ABORT, waiting=True)
            self._outbox.flush()

    def _load(self) -> None:
        """Build the engine's parts (engine/startup.py), then wire them to this core's
        request tables: the scheduler asks the core for cached prefixes and sparse plans."""
        from mlxserve.engine.startup import build_engine
        from mlxserve.models.detokenizer import detokenizer_prototype

        parts = build_engine(self.model_config, self.engine_config, self._loader)
        self.max_model_len, self.prefix = parts.max_model_len, parts.prefix
        self.scheduler, self.runner = parts.scheduler, parts.runner
        self.speculation, self.specprefill = parts.speculation, parts.specprefill
        if self.prefix is not None:
            self.scheduler.cached_prefix = self._lookup_prefix
        self.scheduler.sparse_prefill = lambda rid, cached: self.specprefill.plan(
            self._waiting[rid].request, cached)
        self.loaded = parts.loaded
        self._detokenizer_proto = detokenizer_prototype(parts.loaded.tokenizer)
        self._publish_stats()

    def _loop(self) -> None:
        while True:
            try:
                idle = not self.scheduler.has_work() and not self.runner.has_pending
                if not self._drain_inbox(block=idle):
                    return
                self._step()
            except Exception as e:  # a bookkeeping bug: fail what runs, keep serving
                log.exception("engine step failed")
                self.runner.reset()
                self._fail_all(f"internal error: {type(e).__name__}", FINISH_ERROR)
            self._outbox.flush()

    def _drain_inbox(self, block: bool) -> bool:
        """Apply queued commands; False when asked to shut down."""
        while True:
            try:
                cmd = self.inbox.get(block=block, timeout=0.5 if block else None)
            except queue.Empty:
                return True
            if block:  # waking from idle: let a burst of arrivals land in the same step
                time.sleep(_BURST_WAIT_S)
            block = False
            if isinstance(cmd, Shutdown):
                return False
            if isinstance(cmd, Add):
                self._add(cmd.request, cmd.sink)
            elif isinstance(cmd, Abort):
                self._finish(cmd.request_id, FINISH_ABORT)
            elif isinstance(cmd, ClearPrefixCache):
                cmd.done(self._clear_prefix_cache())
                self._publish_stats()

    def _clear_prefix_cache(self) -> int:
        """Drop the prefix cache's unused entries and hand their memory back (MLX keeps
        freed buffers for reuse otherwise). Returns the entries dropped."""
        import mlx.core as mx

        dropped = self.prefix.store.clear() if self.prefix is not None else 0
        mx.clear_cache()
        return dropped

    def _add(self, request: GenerateRequest, sink: DeltaSink) -> None:
        """Queue a request; any refusal (or bug) is answered on its sink, never raised."""
        rid = request.request_id
        try:
            request.validate(self.runner.vocab_size, self.max_model_len)
            self.specprefill.check(request)
            seq = SeqState(rid, len(request.prompt_tokens), request.stop.max_tokens,
                           pinned=not resumable(request))
            self.scheduler.add(seq)
        except Exception as e:  # the client validated already: a race or a bad request
            self._outbox.put(sink, error_delta(rid, e))
            return
        seed = request.sampling.seed
        if seed is None:
            seed = self._seeds.getrandbits(63)
        self._waiting[rid] = Submitted(request, sink, seed, added_at=time.monotonic())
        self._publish_stats()

    def _admit(self, request_id: str) -> None:
        """The scheduler admitted a request: its state, cache and detokenizer now."""
        submitted = self._waiting.pop(request_id)
        request = submitted.request
        proto = self._detokenizer_proto
        # OutputStream resets it, so a copy of the prototype starts clean
        detokenizer = copy.copy(proto) if proto is not None else NullDetokenizer()
        output = OutputStream(request, detokenizer, self.loaded.eos_token_ids,
                              self.max_model_len)
        match = self._matches.pop(request_id, None)
        cached = match.length if match is not None else 0
        sparse = self.specprefill.take(request_id, cached)
        self._active[request_id] = RequestState(
            request, submitted.sink, output, submitted.seed,
            locks=[match] if match is not None else [], cached_tokens=cached,
            sparse=sparse is not None, queue_time_s=time.monotonic() - submitted.added_at)
        self.runner.add(request, submitted.seed, prefix=match, sparse=sparse)

    def _sparse_selected(self, request_id: str, kept: int) -> None:
        """The draft scored a sparse request: the target prefills ``kept`` tokens."""
        self.scheduler.sparse_selected(request_id, kept)
        state = self._active.get(request_id)
        if state is not None:
            skipped = len(state.prompt_ids) - state.cached_tokens - kept
            state.prefilled_tokens, state.position_delta = kept, skipped
            self.specprefill.scored(skipped)

    def _lookup_prefix(self, request_id: str) -> int:
        """At admission (the scheduler asks): the prompt tokens a cached prefix holds."""
        submitted = self._waiting.get(request_id)
        request = submitted.request if submitted else self._resumed_request(request_id)
        match = self.prefix.lookup(request)
        if match is None:
            return 0
        self._matches[request_id] = match
        return match.length

    def _step(self) -> None:
        started = time.perf_counter()
        self._trace.mark("idle")
        drafts = self._propose() if self.speculation is not None else {}
        plan = self.scheduler.schedule({rid: len(p.tokens) for rid, p in drafts.items()})
        for request_id in plan.preempted:
            self._preempt(request_id)
            drafts.pop(request_id, None)
        for chunk in plan.prefills:
            if chunk.request_id in self._waiting or chunk.request_id in self._preempted:
                self._admit_guarded(chunk.request_id)
        self._trace.mark("plan")
        failures = self.runner.launch(plan, drafts)
        for request_id, kept in self.runner.take_selections():
            self._sparse_selected(request_id, kept)
        self._trace.mark("launch")
        outputs, late = self.runner.collect(leave=0 if plan.read_now else 1)
        self._trace.mark("collect")
        self._deliver(outputs, failures + late)
        if self.speculation is not None:
            self.speculation.settle(plan, drafts, outputs, time.perf_counter() - started,
                                    self.scheduler)
        self._steps += 1
        self._trace.record(plan, len(self.scheduler.running), len(self.scheduler.waiting))
        if self._steps % _CLEAR_CACHE_EVERY == 0:
            import mlx.core as mx

            mx.clear_cache()
        self._publish_stats()

    def _deliver(self, outputs: list, failures: list) -> None:
        for failure in failures:
            self._finish(failure.request_id, FINISH_ERROR, error=failure.error)
        active = self._active
        for out in outputs:  # one tight loop per step
            state = active.get(out.request_id)
            if state is None:  # finished or aborted while its token was in flight
                continue
            try:
                self._update(state, out)
            except Exception as e:  # e.g. a detokenizer failure: only this request ends
                log.exception("output of request %s failed", out.request_id)
                self._finish(out.request_id, FINISH_ERROR, error=f"{type(e).__name__}: {e}")

    # ---- speculative decoding (engine/speculation.py, engine/verify.py) -------------
    def _propose(self) -> dict:
        """Proposals for this step's rows (request id -> Proposal), when speculation is
        worth it now; the rows' last tokens are read back first (proposals follow them)."""
        spec = self.speculation
        decoding = [s for s in self.scheduler.running.values() if s.wants_decode]
        if not decoding or not spec.wanted(len(decoding)):
            return {}
        rows = spec.rows(self.scheduler.running, self._active, self.runner.hidden)
        if not rows:
            return {}
        if self.runner.has_pending:  # the histories grow in place as tokens are read back
            outputs, failures = self.runner.collect(leave=0)
            self._deliver(outputs, failures)
            spec.drained += len(outputs)
        rows = [r for r in rows if r.request_id in self._active]
        return spec.propose(rows)

    def _admit_guarded(self, request_id: str) -> None:
        try:
            if request_id in self._preempted:
                self._resume(request_id)
            else:
                self._admit(request_id)
        except Exception as e:
            log.exception("admitting request %s failed", request_id)
            self._finish(request_id, FINISH_ERROR, error=f"{type(e).__name__}: {e}")

    def _update(self, state: RequestState, out) -> None:
        rid, token = out.request_id, out.token_id
        state.commit(token)
        self.scheduler.commit(rid, 1)
        self._total_generated += 1
        step = state.output.add_token(token)
        count = len(state.output_ids)
        logprobs = None if out.logprob is None else state.covered_logprobs(
            out.logprob, step.tokens + _scored_stop(state, step))
        delta = EngineDelta(rid, [token], step.text, logprobs, out.prompt_logprobs,
                            step.finish_reason, step.stop_reason,
                            len(state.request.prompt_tokens), count, state.cached_tokens,
                            prefilled_tokens=state.prefilled_tokens,
                            queue_time_s=state.queue_time_s if count == 1 else None)
        if step.finish_reason is not None:
            self._retire(rid, keep_prefix=True)
        self._outbox.put(state.sink, delta, self._consumer_gone)

    # ---- preemption (the scheduler ran short of KV memory) ---------------------------
    def _preempt(self, request_id: str) -> None:
        """Drop a running request's cache (its computed KV goes to the prefix cache, where
        its resume finds it); its state, output so far and consumer stay."""
        state = self._active[request_id]
        if self.prefix is not None:
            self.prefix.release(state.locks)
            state.locks = []
            self._store_prefix(state)
        self.runner.release(request_id, preempted=True)
        self._preempted.add(request_id)

    def _resumed_request(self, request_id: str) -> GenerateRequest:
        """A preempted request as it resumes: its prompt is prompt + output so far."""
        state = self._active[request_id]
        done = self.scheduler.running[request_id].recompute
        if done != len(state.output_ids):
            raise RuntimeError(f"resuming with {done} of {len(state.output_ids)} outputs")
        return dataclasses.replace(state.request,
                                   prompt_tokens=state.prompt_ids + state.output_ids)

    def _resume(self, request_id: str) -> None:
        """The scheduler re-admitted a preempted request: a new row recomputes its prompt
        and output so far (from a cached prefix where there is one)."""
        state = self._active[request_id]
        self._preempted.discard(request_id)
        match = self._matches.pop(request_id, None)
        state.locks = [match] if match is not None else []
        self.runner.add(self._resumed_request(request_id), state.seed, prefix=match,
                        resumed=len(state.output_ids))

    def _consumer_gone(self, request_id: str) -> None:
        """Its consumer is gone (the event loop closed): stop computing for it."""
        if self._retire(request_id, keep_prefix=True) is not None:
            self._total_aborted += 1

    def _finish(self, request_id: str, reason: str, error: str | None = None) -> None:
        waiting = self._waiting.pop(request_id, None)
        if reason == FINISH_ABORT and (waiting is not None or request_id in self._active):
            self._total_aborted += 1
        state = self._retire(request_id, keep_prefix=reason == FINISH_ABORT)
        sink = state.sink if state is not None else waiting.sink if waiting else None
        if sink is None:
            return
        if waiting is not None:
            self._total_finished += 1
        request = state.request if state is not None else waiting.request
        self._outbox.put(sink, EngineDelta(
            request_id=request_id, finish_reason=reason, error=error,
            prompt_tokens=len(request.prompt_tokens),
            completion_tokens=state.completion_tokens if state is not None else 0,
            cached_tokens=state.cached_tokens if state is not None else 0,
            prefilled_tokens=state.prefilled_tokens if state is not None else None,
        ))

    def _retire(self, request_id: str, keep_prefix: bool = False) -> RequestState | None:
        """Forget a request; ``keep_prefix``: store its computed KV in the prefix cache."""
        state = self._active.pop(request_id, None)
        self._preempted.discard(request_id)
        if state is not None and self.prefix is not None:
            # its own locks go first: the entry it extends (the chat's previous turn) is
            # then replaced, and under a tight budget its bytes make room for the new one
            self.prefix.release(state.locks)
            if keep_prefix:
                self._store_prefix(state)
        self.specprefill.forget(request_id)
        stale = self._matches.pop(request_id, None)  # admitted, then failed before _admit
        if stale is not None:
            self.prefix.release([stale])
        self.scheduler.finish(request_id)
        self.runner.release(request_id)
        if self.speculation is not None:
            self.speculation.drop(request_id)
        if state is not None:
            self._total_finished += 1
        return state

    def _store_prefix(self, state: RequestState) -> None:
        """Prompt + output tokens whose KV is computed, once a token came back (so the
        prompt's forward ran and was read back; a partial prefill has no output)."""
        if state.sparse or not state.output_ids or not self.prefix.eligible(state.request):
            return  # a sparse prompt's KV is not the dense prompt's
        tokens = self.prefix.key(state.request) + state.output_ids
        try:
            self.prefix.insert(tokens, state.tokens_computed,
                               self.runner.rows.get(state.request_id),
                               pin=state.request.pin_prefix)
        except Exception:  # the cache is an optimisation: never fail a finish for it
            log.exception("storing the prefix of request %s failed", state.request_id)

    def _fail_all(self, message: str, reason: str, waiting: bool = False) -> None:
        """Finish every running request (and the waiting ones when ``waiting``)."""
        ids = list(self._active) + (list(self._waiting) if waiting else [])
        for request_id in ids:
            self._finish(request_id, reason, error=message if reason == FINISH_ERROR else None)

    def _publish_stats(self) -> None:
        s = self.scheduler
        self.stats = EngineStats(
            running=len(s.running), waiting=len(s.waiting),
            total_finished=self._total_finished, kv_tokens_used=s.kv_tokens_used,
            kv_tokens_total=s.kv_tokens_total, total_aborted=self._total_aborted,
            total_generated_tokens=self._total_generated, **prefix_stats(self.prefix),
            num_preemptions=s.num_preemptions, max_num_seqs=s.max_num_seqs,
            specprefill_requests=self.specprefill.requests if self.specprefill else 0,
            specprefill_tokens_skipped=self.specprefill.tokens_skipped
            if self.specprefill else 0,
            **(self.speculation.stats() if self.speculation is not None else {}),
            **mlx_memory())


def _scored_stop(state: RequestState, step) -> int:
    """1 when a scoring request (one asking for prompt logprobs) ends on a token stop: its
    logprobs then keep that token too, one entry per generated token as vLLM gives (lm-eval
    drops the last entry of an echoed prompt's, taking it for the generated token)."""
    token_stop = step.finish_reason == FINISH_STOP and isinstance(step.stop_reason, int)
    return int(token_stop and state.request.prompt_logprobs is not None)

