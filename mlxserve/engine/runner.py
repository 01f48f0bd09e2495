"""Runs one scheduled step on the model (MLX, engine thread only).

Prefill runs per request on the request's own cache (chunked by the scheduler). Decode
runs every decoding request in one batch: when requests join or leave, their per-layer
caches are merged (``Cache.merge``), extended (``extend``) or filtered (``filter``) with
mlx-lm's batch cache classes (KV, rotating/sliding-window, arrays/SSM caches). A batch of
one keeps the request's plain cache, so batch 1 runs exactly the ops of
``mlx_lm.stream_generate``.

Pipelining as in ``stream_generate``: ``run(plan)`` builds and starts (``mx.async_eval``)
this step's graph, whose decode inputs are the previous step's still-lazy tokens, and only
then reads the previous step's tokens back. So ``run`` returns the outputs of the
*previous* call; call ``run`` with an empty plan to flush the last ones.

Prefill from embeddings (the vision hook): a request whose ``multimodal.encode`` is set
gets ``encode(model) -> (embeddings (L, hidden), position_ids (3, L) | None, extras)``
called once, on this thread, before its first prefill chunk. Chunks then feed
``embeddings[start:start+n]`` instead of token ids (``input_embeddings=`` in mlx-lm's
calling convention); when position ids are given, the model must also accept
``position_ids=`` (a models/ adapter for M-RoPE families provides it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import mlx.core as mx

from mlxserve.engine.request import GenerateRequest, TokenLogprob
from mlxserve.engine.sampler import RowSampler, SampleResult, sample
from mlxserve.engine.scheduler import PrefillChunk, StepPlan
from mlxserve.errors import InvalidRequest


@dataclass
class TokenOutput:
    """One sampled token of one request, read back from the device."""

    request_id: str
    token_id: int
    logprob: TokenLogprob | None = None


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


@dataclass
class _DecodeBatch:
    ids: list[str]
    caches: list  # per layer: the plain cache when len(ids) == 1, else a batch cache
    tokens: mx.array  # (B,) lazy last tokens


@dataclass
class _Pending:
    ids: list[str]
    result: SampleResult
    want_logprobs: list[int] = field(default_factory=list)  # top-k wanted per row, -1 = none


class Runner:
    def __init__(self, model: Any, vocab_size: int, make_cache, stream=None):
        self.model = model
        self.vocab_size = vocab_size
        self._make_cache = make_cache
        self.stream = stream if stream is not None else mx.new_stream(mx.default_device())
        self.rows: dict[str, _Row] = {}
        self.batch: _DecodeBatch | None = None
        self.pending: list[_Pending] = []

    # ---- request lifecycle --------------------------------------------------------
    def add(self, request: GenerateRequest, seed: int) -> None:
        sampler = RowSampler(request.sampling, request.prompt_tokens, self.vocab_size, seed)
        prompt = mx.array(request.prompt_tokens, dtype=mx.uint32)
        self.rows[request.request_id] = _Row(request, sampler, self._make_cache(), prompt)

    def release(self, request_id: str) -> None:
        """Forget a request; its cache leaves the decode batch at the next decode step."""
        self.rows.pop(request_id, None)

    def reset(self) -> None:
        """Drop the decode batch and in-flight results (after a failed step)."""
        self.rows.clear()
        self.batch = None
        self.pending = []

    @property
    def has_pending(self) -> bool:
        return bool(self.pending)

    # ---- the step -----------------------------------------------------------------
    def run(self, plan: StepPlan) -> tuple[list[TokenOutput], list[StepFailure]]:
        failures: list[StepFailure] = []
        started: list[_Pending] = []
        with mx.stream(self.stream):
            for chunk in plan.prefills:
                if chunk.request_id in self.rows:
                    self._prefill_guarded(chunk, started, failures)
            decode_ids = [i for i in plan.decodes if i in self.rows]
            if decode_ids:
                started.append(self._decode(decode_ids))
            else:
                self._drop_batch_rows_not_in(set())
        arrays = [a for p in started for a in _result_arrays(p.result)]
        if arrays:
            mx.async_eval(arrays)
        outputs = self._read_back(self.pending)
        self.pending = started
        return outputs, failures

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
        logits = self._forward_chunk(row, chunk.start, end)
        if not chunk.is_last:
            mx.async_eval([c.state for c in row.cache])
            return None
        result = sample(logits[:, -1, :], [row.sampler])
        row.last_token = result.tokens
        return _Pending([chunk.request_id], result, [_wanted_top(row)])

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
        logits = logits[:, -1, :]
        result = sample(logits, [r.sampler for r in rows])
        batch.tokens = result.tokens
        return _Pending(list(batch.ids), result, [_wanted_top(r) for r in rows])

    # ---- decode batch membership --------------------------------------------------
    def _sync_batch(self, ids: list[str]) -> None:
        wanted = set(ids)
        self._drop_batch_rows_not_in(wanted)
        current = set(self.batch.ids) if self.batch is not None else set()
        joining = [i for i in ids if i not in current]
        if joining:
            self._join(joining)

    def _drop_batch_rows_not_in(self, wanted: set[str]) -> None:
        """Take rows out of the decode batch: released or finished rows are dropped;
        live rows that skip this decode get their own cache back."""
        batch = self.batch
        if batch is None:
            return
        keep = [k for k, i in enumerate(batch.ids) if i in wanted and i in self.rows]
        if len(keep) == len(batch.ids):
            return
        for k, rid in enumerate(batch.ids):
            row = self.rows.get(rid)
            if rid not in wanted and row is not None and not self._done_decoding(row):
                row.cache = (batch.caches if len(batch.ids) == 1
                             else [c.extract(k) for c in batch.caches])
                row.last_token = batch.tokens[k : k + 1]
        if not keep:
            self.batch = None
            return
        index = mx.array(keep, dtype=mx.int32)
        for c in batch.caches:
            c.filter(index)
        batch.tokens = batch.tokens[index]
        batch.ids = [batch.ids[k] for k in keep]
        if len(batch.ids) == 1:
            batch.caches = [c.extract(0) for c in batch.caches]

    @staticmethod
    def _done_decoding(row: _Row) -> bool:
        return row.sampler.position >= row.request.stop.max_tokens

    def _join(self, joining: list[str]) -> None:
        rows = [self.rows[i] for i in joining]
        batch = self.batch
        if batch is None and len(rows) == 1:
            self.batch = _DecodeBatch([joining[0]], rows[0].cache, rows[0].last_token)
        elif batch is None or len(batch.ids) == 1:
            plain = ([batch.caches] if batch else []) + [r.cache for r in rows]
            ids = (batch.ids if batch else []) + joining
            tokens = ([batch.tokens] if batch else []) + [r.last_token for r in rows]
            caches = [type(layer[0]).merge(list(layer)) for layer in zip(*plain)]
            self.batch = _DecodeBatch(ids, caches, mx.concatenate(tokens))
        else:
            merged = [type(layer[0]).merge(list(layer)) for layer in zip(*[r.cache for r in rows])]
            for c, m in zip(batch.caches, merged):
                c.extend(m)
            batch.ids += joining
            batch.tokens = mx.concatenate([batch.tokens] + [r.last_token for r in rows])
        for r in rows:
            r.cache = None
            r.last_token = None

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
                outputs.append(TokenOutput(rid, tokens[k], lp))
        return outputs


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
