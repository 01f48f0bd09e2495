"""Runs one scheduled step on the model (MLX, engine thread only).

Prefill runs per request on the request's own cache (chunked by the scheduler). Decode
runs every decoding request in one batch: when requests join or leave, their per-layer
caches are merged (``Cache.merge``), extended (``extend``) or filtered (``filter``) with
mlx-lm's batch cache classes (KV, rotating/sliding-window, arrays/SSM caches). A batch of
one keeps the request's plain cache, so batch 1 runs exactly the ops of
``mlx_lm.stream_generate``. A batch whose rows all sit at the same position (same cache
length, e.g. prompts of one length sent together) runs on plain ``KVCache`` objects holding
all rows: no attention mask and a scalar RoPE offset, so the fused decode attention kernel
is used; a ``BatchKVCache`` with per-row offsets needs a mask, which on CUDA falls back to
unfused attention (~20% more time per step at 8-64 rows on a 0.6B model).

Pipelining as in ``stream_generate``: ``run(plan)`` builds and starts (``mx.async_eval``)
this step's graph, whose decode inputs are the previous step's still-lazy tokens, and only
then reads the previous step's tokens back. So ``run`` returns the outputs of the
*previous* call; call ``run`` with an empty plan to flush the last ones.

Structured outputs: a row whose request has a ``constraint`` needs its grammar's token mask
before its token can be sampled, and that mask depends on the row's previous token. So a
step with constrained rows is started in two parts: the forward passes (async_eval of the
logits), then, while the device runs them, the previous tokens are read back, committed to
the constraints and the masks filled on the CPU; only then is the masked sampling started.
A step without constrained rows samples in the same graph as before (they pay nothing).

Prefill from embeddings (the vision hook): a request whose ``multimodal.encode`` is set
gets ``encode(model) -> (embeddings (L, hidden), position_ids (3, L) | None, extras)``
called once, on this thread, before its first prefill chunk. Chunks then feed
``embeddings[start:start+n]`` instead of token ids (``input_embeddings=`` in mlx-lm's
calling convention); when position ids are given, the model must also accept
``position_ids=`` (a models/ adapter for M-RoPE families provides it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import mlx.core as mx
import numpy as np
from mlx_lm.models.cache import BatchKVCache, KVCache

from mlxserve.engine.prompt_logprobs import forward_logprobs, read_prompt_logprobs
from mlxserve.engine.request import GenerateRequest, SamplingParams, StopParams, TokenLogprob
from mlxserve.engine.sampler import RowSampler, SampleResult, sample
from mlxserve.engine.scheduler import PrefillChunk, StepPlan
from mlxserve.errors import InvalidRequest


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
class _Row:
    request: GenerateRequest
    sampler: RowSampler
    cache: list | None  # own per-layer cache; None while merged into the decode batch
    prompt: mx.array
    embeddings: mx.array | None = None
    position_ids: mx.array | None = None
    vision_extras: Any = None  # models.vlm.VisionExtras (rope delta, deepstack features)
    last_token: mx.array | None = None  # lazy (1,) token, input of its next decode
    prompt_lp: list = field(default_factory=list)  # PromptLogprobChunk per forward so far


@dataclass
class _DecodeBatch:
    ids: list[str]
    caches: list  # per layer: the request's own caches when ``plain``, else batch caches
    tokens: mx.array | None  # (B,) lazy last tokens (None until a masked sample starts)
    plain: bool = False  # unbatched cache classes: one request's own caches (exactly
    # stream_generate's ops), or KVCaches holding several rows at one common position


@dataclass
class _MaskedSample:
    """A sample that waits for its rows' grammar masks (filled while the forward runs)."""

    logits: mx.array
    rows: list[_Row]
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
    def __init__(self, model: Any, vocab_size: int, make_cache, stream=None):
        self.model = model
        self.vocab_size = vocab_size
        self._make_cache = make_cache
        self.stream = stream if stream is not None else mx.new_stream(mx.default_device())
        self.rows: dict[str, _Row] = {}
        self.batch: _DecodeBatch | None = None
        self.joining: list[_DecodeBatch] = []  # batch-prefilled groups, join at next decode
        self.pending: list[_Pending] = []
        # grammar failures found while starting a masked sample; reported with the next
        # step's results, so the tokens read back before them are delivered first
        self.late_failures: list[StepFailure] = []
        self.failed: set[str] = set()  # requests whose grammar failure was reported

    # ---- request lifecycle --------------------------------------------------------
    def add(self, request: GenerateRequest, seed: int) -> None:
        sampler = RowSampler(request.sampling, request.prompt_tokens, self.vocab_size, seed)
        prompt = mx.array(request.prompt_tokens, dtype=mx.uint32)
        self.rows[request.request_id] = _Row(request, sampler, self._make_cache(), prompt)

    def release(self, request_id: str) -> None:
        """Forget a request; its cache leaves the decode batch at the next decode step
        (at once when no request is left)."""
        self.rows.pop(request_id, None)
        self.failed.discard(request_id)
        if not self.rows:
            self.batch = None
            self.joining = []

    def reset(self) -> None:
        """Drop the decode batch and in-flight results (after a failed step)."""
        self.rows.clear()
        self.batch = None
        self.joining = []
        self.pending = []
        self.late_failures = []
        self.failed = set()

    @property
    def has_pending(self) -> bool:
        return bool(self.pending)

    def warm_up(self) -> None:
        """Run every batch path once on tiny prompts, then forget it all.

        MLX's CUDA backend compiles some kernels (e.g. the gathers of ``BatchKVCache.filter``)
        the first time they are used, which takes seconds; without this the first requests
        that join or leave a batch would stall behind those compilations."""
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
            step("", "ab")  # batched right-padded prefill
            step("ab", "c")  # padded batch decode; one prompt prefilled alone
            step("abc")  # a plain cache joins the batch
            step("ac")  # one row leaves (filter) and takes its own cache (extract)
            step("a")  # down to one row
            step("", "de")  # aligned rows prefilled together
            step("de")  # aligned batch on plain caches
            step("d")  # a row leaves an aligned batch
            step("")
            mx.eval([a for p in self.pending for a in _result_arrays(p.result)])
        finally:
            self.reset()

    # ---- the step -----------------------------------------------------------------
    def run(self, plan: StepPlan) -> tuple[list[TokenOutput], list[StepFailure]]:
        failures, self.late_failures = self.late_failures, []
        started: list[_Pending] = []
        with mx.stream(self.stream):
            decode_ids = [i for i in plan.decodes if i in self.rows]
            if decode_ids:
                started.append(self._decode(decode_ids))
            else:
                self.batch = self._shrink(self.batch, set())
            chunks = [c for c in plan.prefills if c.request_id in self.rows]
            whole = [c for c in chunks if self._whole_prompt_text_chunk(c)]
            if len(whole) >= 2:
                self._prefill_group_guarded(whole, started, failures)
            for chunk in chunks:
                if len(whole) < 2 or chunk not in whole:
                    self._prefill_guarded(chunk, started, failures)
        arrays = [a for p in started for a in p.arrays()]
        if arrays:
            mx.async_eval(arrays)
        outputs = self._read_back(self.pending)
        masked = [p for p in started if p.masked is not None]
        if masked:
            self._commit(outputs)
            self.late_failures = self._start_masked(masked)
        self.pending = started
        return outputs, failures

    # ---- structured outputs: masked sampling --------------------------------------
    def _sample(self, ids: list[str], logits: mx.array, rows: list[_Row],
                assign: Callable[[mx.array], None]) -> _Pending:
        """Sample now, or (a constrained row among ``rows``) once the masks are known."""
        pending = _Pending(list(ids), None, [_wanted_top(r) for r in rows])
        if any(r.request.constraint is not None for r in rows):
            pending.masked = _MaskedSample(logits, rows, assign)
            return pending
        pending.result = sample(logits, [r.sampler for r in rows])
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
            words = (work.logits.shape[-1] + 31) // 32
            allowed = mx.array(fill_masks(constraints, words).view(np.uint32))
            p.result = sample(work.logits, [r.sampler for r in work.rows], allowed)
            work.assign(p.result.tokens)
            for rid, c in zip(p.ids, constraints):
                if c is not None and c.error is not None and rid not in self.failed:
                    self.failed.add(rid)
                    failures.append(StepFailure(rid, c.error))
        mx.async_eval([a for p in pending for a in _result_arrays(p.result)])
        return failures

    def _whole_prompt_text_chunk(self, chunk: PrefillChunk) -> bool:
        row = self.rows[chunk.request_id]
        # a request wanting prompt logprobs has its own forward, so its logits are at most
        # one chunk (a padded group's would be rows x longest x vocab)
        return (chunk.start == 0 and chunk.is_last and row.request.multimodal is None
                and row.request.prompt_logprobs is None)

    def _prefill_group_guarded(self, chunks: list[PrefillChunk], started: list,
                               failures: list) -> None:
        ids = [c.request_id for c in chunks]
        try:
            started.append(self._prefill_group(ids))
        except Exception as e:
            for rid in ids:
                self.rows.pop(rid, None)
                failures.append(StepFailure(rid, _describe(e)))

    def _prefill_group(self, ids: list[str]) -> _Pending:
        """Whole short prompts of several requests in one batched forward, as mlx-lm's
        BatchGenerator does: right-padded prompt[:-1], then the last tokens together."""
        rows = [self.rows[i] for i in ids]
        caches = [type(layer[0]).merge(list(layer)) for layer in zip(*[r.cache for r in rows])]
        heads = [r.request.prompt_tokens[:-1] for r in rows]
        longest = max(len(h) for h in heads)
        if longest > 0:
            padding = [longest - len(h) for h in heads]
            if max(padding) > 0:
                for c in caches:
                    c.prepare(lengths=[len(h) for h in heads], right_padding=padding)
            tokens = mx.array([h + [0] * p for h, p in zip(heads, padding)], dtype=mx.uint32)
            self.model(tokens, cache=caches)
            if max(padding) > 0:
                for c in caches:
                    c.finalize()
        last = mx.array([r.request.prompt_tokens[-1] for r in rows], dtype=mx.uint32)
        logits = self.model(last[:, None], cache=caches)[:, -1, :]
        for r in rows:
            r.cache = None
        group = _DecodeBatch(list(ids), caches, None, plain=False)
        self.joining.append(group)
        return self._sample(ids, logits, rows, lambda t: setattr(group, "tokens", t))

    def _prefill_guarded(self, chunk: PrefillChunk, started: list, failures: list) -> None:
        try:
            pending = self._prefill(chunk)
        except Exception as e:  # one request's bad input must not stop the step
            self.rows.pop(chunk.request_id, None)
            failures.append(StepFailure(chunk.request_id, _describe(e)))
            return
        if pending is not None:
            started.append(pending)

    def _prefill(self, chunk: PrefillChunk) -> _Pending | None:
        row = self.rows[chunk.request_id]
        if chunk.start == 0 and row.request.multimodal is not None:
            self._encode_media(row)
        end = chunk.start + chunk.length
        if not chunk.is_last:  # logits unused (never computed) unless prompt logprobs
            self._keep_prompt_logprobs(row, self._forward_chunk(row, chunk.start, end),
                                       chunk.start)
            mx.async_eval([c.state for c in row.cache]
                          + (row.prompt_lp[-1].arrays() if row.prompt_lp else []))
            return None
        if chunk.length > 1:  # as stream_generate: the last token alone gives the logits,
            logits = self._forward_chunk(row, chunk.start, end - 1)  # so no lm_head over
            self._keep_prompt_logprobs(row, logits, chunk.start)  # the chunk
        logits = self._forward_chunk(row, end - 1, end)
        prompt_lp = {} if row.request.prompt_logprobs is None else {chunk.request_id: row.prompt_lp}
        row.prompt_lp = []
        pending = self._sample([chunk.request_id], logits[:, -1, :], [row],
                               lambda t: setattr(row, "last_token", t))
        pending.prompt_logprobs = prompt_lp
        return pending

    @staticmethod
    def _keep_prompt_logprobs(row: _Row, logits: mx.array, start: int) -> None:
        if row.request.prompt_logprobs is not None:
            row.prompt_lp.append(forward_logprobs(logits[0], row.prompt, start,
                                                  row.request.prompt_logprobs))

    def _forward_chunk(self, row: _Row, start: int, end: int) -> mx.array:
        if row.embeddings is None:
            return self.model(row.prompt[start:end][None], cache=row.cache)
        embeds = row.embeddings[start:end][None]
        if row.position_ids is not None:
            return self.model(row.prompt[start:end][None], cache=row.cache,
                              input_embeddings=embeds,
                              position_ids=row.position_ids[:, start:end][:, None],
                              vision_extras=row.vision_extras)
        return self.model(row.prompt[start:end][None], cache=row.cache,
                          input_embeddings=embeds)

    def _encode_media(self, row: _Row) -> None:
        media = row.request.multimodal
        if media.encode is None:
            return
        embeddings, position_ids, extras = media.encode(self.model)
        if embeddings.shape[0] != len(row.request.prompt_tokens):
            raise InvalidRequest("the media embeddings do not match the prompt length")
        row.embeddings, row.position_ids = embeddings, position_ids
        row.vision_extras = extras

    def _decode(self, ids: list[str]) -> _Pending:
        self._sync_batch(ids)
        batch = self.batch
        rows = [self.rows[i] for i in batch.ids]
        # M-RoPE rows decode at cache offset + their prompt's rope delta.
        deltas = [getattr(r.vision_extras, "rope_delta", 0) for r in rows]
        if any(deltas):
            logits = self.model(batch.tokens[:, None], cache=batch.caches, rope_deltas=deltas)
        else:
            logits = self.model(batch.tokens[:, None], cache=batch.caches)
        return self._sample(batch.ids, logits[:, -1, :], rows,
                            lambda t: setattr(batch, "tokens", t))

    # ---- decode batch membership --------------------------------------------------
    def _sync_batch(self, ids: list[str]) -> None:
        wanted = set(ids)
        self.batch = self._shrink(self.batch, wanted)
        groups = [self._shrink(g, wanted) for g in self.joining]
        self.joining = []
        for group in groups:
            if group is not None:
                self._absorb(group)
        current = set(self.batch.ids) if self.batch is not None else set()
        singles = [i for i in ids if i not in current]
        if singles:
            self._join(singles)
        if self.batch is not None and not self.batch.plain and self._aligned(self.batch):
            _make_plain(self.batch)

    def _aligned(self, batch: _DecodeBatch) -> bool:
        """All rows hold the same number of cached tokens (so none is padded) and decode
        with plain positions (no M-RoPE delta)."""
        rows = [self.rows[i] for i in batch.ids]
        if any(r.vision_extras is not None for r in rows):
            return False
        return len({len(r.request.prompt_tokens) + r.sampler.position for r in rows}) == 1

    def _shrink(self, batch: _DecodeBatch | None, wanted: set[str]) -> _DecodeBatch | None:
        """Keep the wanted rows of ``batch``: released or finished rows are dropped;
        live rows that skip this decode get their own cache back."""
        if batch is None:
            return None
        keep = [k for k, i in enumerate(batch.ids) if i in wanted and i in self.rows]
        if len(keep) == len(batch.ids):
            return batch
        _unplain(batch)
        plain = batch.plain
        for k, rid in enumerate(batch.ids):
            row = self.rows.get(rid)
            if rid not in wanted and row is not None and not self._done_decoding(row):
                row.cache = batch.caches if plain else [c.extract(k) for c in batch.caches]
                row.last_token = batch.tokens[k : k + 1]
        if not keep:
            return None
        index = mx.array(keep, dtype=mx.int32)
        for c in batch.caches:
            c.filter(index)
        batch.tokens = batch.tokens[index]
        batch.ids = [batch.ids[k] for k in keep]
        if len(batch.ids) == 1:
            batch.caches = [c.extract(0) for c in batch.caches]
            batch.plain = True
        return batch

    @staticmethod
    def _done_decoding(row: _Row) -> bool:
        return row.sampler.position >= row.request.stop.max_tokens

    def _absorb(self, group: _DecodeBatch) -> None:
        """Add a batch-prefilled group (batch caches) to the decode batch."""
        batch = self.batch
        if batch is None:
            if group.plain or len(group.ids) > 1:
                self.batch = group
            else:
                self.batch = _DecodeBatch(group.ids, [c.extract(0) for c in group.caches],
                                          group.tokens, plain=True)
            return
        for b in (batch, group):
            _unplain(b, force=True)
        for c, g in zip(batch.caches, group.caches):
            c.extend(g)
        batch.ids = batch.ids + group.ids
        batch.tokens = mx.concatenate([batch.tokens, group.tokens])

    def _join(self, joining: list[str]) -> None:
        """Add rows that own a plain cache (prefilled alone) to the decode batch."""
        rows = [self.rows[i] for i in joining]
        tokens = mx.concatenate([r.last_token for r in rows])
        if len(rows) == 1:
            group = _DecodeBatch(list(joining), rows[0].cache, tokens, plain=True)
        else:
            merged = [type(layer[0]).merge(list(layer)) for layer in zip(*[r.cache for r in rows])]
            group = _DecodeBatch(list(joining), merged, tokens)
        for r in rows:
            r.cache = None
            r.last_token = None
        if self.batch is None:
            self.batch = group
        else:
            self._absorb(group)

    # ---- reading results back -----------------------------------------------------
    def _read_back(self, pending: list[_Pending]) -> list[TokenOutput]:
        outputs: list[TokenOutput] = []
        for p in pending:
            tokens = p.result.tokens.tolist()
            chosen = p.result.logprobs.tolist() if p.result.logprobs is not None else None
            top_ids = p.result.top_ids.tolist() if p.result.top_ids is not None else None
            top_vals = (p.result.top_logprobs.tolist()
                        if p.result.top_logprobs is not None else None)
            for k, rid in enumerate(p.ids):
                lp = None
                if chosen is not None and p.want_logprobs[k] >= 0:
                    n = p.want_logprobs[k]
                    top = list(zip(top_ids[k][:n], top_vals[k][:n])) if n and top_ids else []
                    lp = TokenLogprob(tokens[k], chosen[k], top)
                chunks = p.prompt_logprobs.get(rid)
                prompt_lp = read_prompt_logprobs(chunks) if chunks is not None else None
                outputs.append(TokenOutput(rid, tokens[k], lp, prompt_lp))
        return outputs


def _make_plain(batch: _DecodeBatch) -> None:
    """Aligned rows in ``BatchKVCache`` layers (no padding: the cache holds no left padding
    once all rows have one length) move to ``KVCache`` layers sharing the same buffers."""
    if not all(type(c) is BatchKVCache for c in batch.caches):
        return
    plain = []
    for c in batch.caches:
        keys, values, _, _, length = c.state
        cache = KVCache()
        cache.state = (keys, values, length)
        plain.append(cache)
    batch.caches = plain
    batch.plain = True


def _unplain(batch: _DecodeBatch, force: bool = False) -> None:
    """Back to batch cache classes: a multi-row plain batch always (rows can only leave or
    join a batch cache), a one-row plain batch when ``force`` (to be extended)."""
    if not batch.plain or (len(batch.ids) == 1 and not force):
        return
    if len(batch.ids) == 1:
        batch.caches = [type(c).merge([c]) for c in batch.caches]
    else:
        rows = len(batch.ids)
        caches = []
        for c in batch.caches:
            cache = BatchKVCache([0] * rows)
            cache.state = (c.keys, c.values, mx.array([c.offset] * rows),
                           mx.array([0] * rows), c.offset)
            caches.append(cache)
        batch.caches = caches
    batch.plain = False


def _wanted_top(row: _Row) -> int:
    p = row.sampler.params
    return p.top_logprobs if (p.logprobs or p.top_logprobs) else -1


def _result_arrays(result: SampleResult) -> list:
    return [a for a in (result.tokens, result.logprobs, result.top_ids, result.top_logprobs)
            if a is not None]


def _describe(error: Exception) -> str:
    if isinstance(error, InvalidRequest):
        return error.message
    return f"{type(error).__name__}: {error}"
