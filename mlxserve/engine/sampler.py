"""Per-request sampling inside one batch (MLX, engine thread only).

Each row of a batch carries its own ``SamplingParams``. Greedy rows stay an exact argmax of
the (biased / penalised) logits; sampled rows apply temperature, top-k, top-p and min-p
with per-row values, then draw with Gumbel noise from a per-row random key derived from
(seed, output position) only, so a seeded request gives the same tokens whatever else is
in the batch. Everything is built lazily: nothing here waits for the device.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import numpy as np

from mlxserve.engine.penalties import PenaltyTable, table_for
from mlxserve.engine.request import SamplingParams

_KEY_MIX = 0x9E3779B97F4A7C15
_U64 = (1 << 64) - 1
_NEUTRAL = SamplingParams()  # penalties off, no bias


class RowSampler:
    """The sampling state of one request: its params, random stream and, when it uses
    penalties or a logit_bias, its slot in the shared ``PenaltyTable``."""

    def __init__(self, params: SamplingParams, prompt_tokens: list[int], vocab_size: int,
                 seed: int, table: PenaltyTable | None = None, output_tokens: list[int] = ()):
        """``output_tokens``: what a resumed (preempted) request had produced already; its
        random stream and penalty counts go on from there."""
        self.params = params
        self.seed = seed
        self.position = len(output_tokens)  # output tokens sampled so far
        self.vocab_size = vocab_size
        p = params
        self.has_penalties = (p.repetition_penalty != 1.0 or p.presence_penalty != 0.0
                              or p.frequency_penalty != 0.0)
        self.table: PenaltyTable | None = None
        self.slot: int | None = None
        if self.has_penalties or p.logit_bias:
            self.table = table if table is not None else table_for(vocab_size)
            self.slot = self.table.allocate(prompt_tokens, p.logit_bias, output_tokens)

    @property
    def processes_logits(self) -> bool:
        return self.slot is not None

    def release(self) -> None:
        """Give the penalty slot back (the request has ended)."""
        if self.slot is not None:
            self.table.release(self.slot)
            self.slot = None

    def noise_key(self, ahead: int = 0) -> int:
        """32-bit key of this row's noise for output position ``position + ahead``: a
        function of (seed, position) only (a verify step draws several positions)."""
        return _fmix64((self.seed * _KEY_MIX + self.position + ahead) & _U64) & 0xFFFFFFFF


@dataclass
class SampleResult:
    tokens: mx.array  # (B,) uint32
    logprobs: mx.array | None  # (B,) logprob of the chosen token, when any row asks
    top_ids: mx.array | None  # (B, K) best alternatives, when any row asks
    top_logprobs: mx.array | None  # (B, K)


def _fmix64(x: int) -> int:
    """MurmurHash3's 64-bit finalizer (host side, exact Python integers)."""
    x ^= x >> 33
    x = (x * 0xFF51AFD7ED558CCD) & _U64
    x ^= x >> 33
    x = (x * 0xC4CEB9FE1A85EC53) & _U64
    return x ^ (x >> 33)


def _fmix32(x: mx.array) -> mx.array:
    """MurmurHash3's 32-bit finalizer on uint32 arrays (wrapping multiplies)."""
    x = x ^ (x >> 16)
    x = x * mx.array(0x85EBCA6B, dtype=mx.uint32)
    x = x ^ (x >> 13)
    x = x * mx.array(0xC2B2AE35, dtype=mx.uint32)
    return x ^ (x >> 16)


def gumbel_noise(row_keys: list[int], vocab: int) -> mx.array:
    """(B, V) Gumbel noise, one counter-based stream per row, built with a few vectorized
    ops whatever the batch size (no per-row random calls)."""
    return _keyed_gumbel(mx.array(row_keys, dtype=mx.uint32), vocab)


def _keyed_gumbel(row_keys: mx.array, vocab: int) -> mx.array:
    keys = row_keys[:, None]
    index = mx.arange(vocab, dtype=mx.uint32)[None, :] * mx.array(0x9E3779B1, dtype=mx.uint32)
    bits = _fmix32(_fmix32(keys ^ index) + keys)
    return -mx.log(-mx.log(open_uniform(bits)))


def open_uniform(bits: mx.array) -> mx.array:
    """uint32 bits → float32 strictly inside (0, 1): (2k + 1) / 2^24 for the top 23 bits k.
    Every value is exact in float32 (24-bit significand), from 2^-24 to 1 - 2^-24; 24 bits
    would round their top value to 1.0, whose noise is +inf."""
    return (bits >> 9).astype(mx.float32) * (2.0 ** -23) + 2.0 ** -24


class BatchParams:
    """The sampling constants of one batch (rows in order), built once per membership:
    per-row temperatures, filters, seeds, penalty slots and logprob wants as arrays, so a
    step's sampler setup does no per-row work beyond reading positions."""

    def __init__(self, rows: tuple[RowSampler, ...], vocab: int):
        self.rows = rows  # held: the cache key's identity stays valid while cached
        params = [r.params for r in rows]
        sampled = [not p.greedy for p in params]
        self.any_sampled = any(sampled)
        users = [k for k, r in enumerate(rows) if r.slot is not None]
        self.plain_greedy = not self.any_sampled and not users
        self.penalty = _penalty_columns(rows, users) if users else None
        counted = [k for k, r in enumerate(rows) if r.has_penalties]
        self.record = (mx.array(counted, dtype=mx.int32), [rows[k].slot for k in counted],
                       rows[counted[0]].table) if counted else None
        self.want_logprobs = any(p.logprobs or p.top_logprobs for p in params)
        self.top_logprobs = max(p.top_logprobs for p in params)
        if self.any_sampled:
            self.draw = _DrawColumns(params, sampled, vocab)
            self.seed_mix = np.array([(r.seed * _KEY_MIX) & _U64 for r in rows], np.uint64)

    def noise_keys(self) -> mx.array:
        """(B,) uint32 noise keys of every row at its current position (as
        ``RowSampler.noise_key``, vectorized)."""
        positions = np.fromiter((r.position for r in self.rows), np.uint64, len(self.rows))
        keys = _fmix64_array(self.seed_mix + positions) & np.uint64(0xFFFFFFFF)
        return mx.array(keys.astype(np.uint32))


class _DrawColumns:
    """Per-row temperature and filters of a batch with sampled rows (greedy rows get the
    neutral values: temperature 1, no top-k / top-p / min-p)."""

    def __init__(self, params: list[SamplingParams], sampled: list[bool], vocab: int):
        self.temps = _column([p.temperature if s else 1.0 for p, s in zip(params, sampled)])
        self.sampled = mx.array(sampled)[:, None]
        ks = [min(p.top_k, vocab) if p.top_k > 0 and s else 0 for p, s in zip(params, sampled)]
        self.k_max = max(ks)
        self.kth = mx.array([max(k, 1) for k in ks], dtype=mx.int32)[:, None] - 1
        self.has_k = mx.array(ks)[:, None] > 0
        top_p = [p.top_p if s else 1.0 for p, s in zip(params, sampled)]
        self.top_p = _column(top_p) if min(top_p) < 1.0 else None
        min_p = [p.min_p if s else 0.0 for p, s in zip(params, sampled)]
        self.min_p = _column(min_p) if max(min_p) > 0.0 else None


def _penalty_columns(rows: tuple[RowSampler, ...], users: list[int]) -> tuple:
    """(table, slot index, repetition, frequency, presence, has-bias) columns; rows without
    penalties or bias read slot 0 with neutral values (penalty 1 and 0, no bias)."""
    p = [r.params if r.slot is not None else _NEUTRAL for r in rows]
    index = mx.array([r.slot or 0 for r in rows], dtype=mx.int32)
    return (rows[users[0]].table if users else None, index, _column([q.repetition_penalty for q in p]),
            _column([q.frequency_penalty for q in p]), _column([q.presence_penalty for q in p]),
            mx.array([bool(q.logit_bias) for q in p])[:, None])


class SamplingCache:
    """A few batches' ``BatchParams`` by row membership (a runner keeps one)."""

    def __init__(self, size: int = 8):
        self.size = size
        self._entries: dict[tuple, BatchParams] = {}

    def get(self, rows: list[RowSampler], vocab: int) -> BatchParams:
        key = (vocab, *rows)
        params = self._entries.pop(key, None)
        if params is None:
            params = BatchParams(tuple(rows), vocab)
            if len(self._entries) >= self.size:
                del self._entries[next(iter(self._entries))]
        self._entries[key] = params  # newest last
        return params


def _fmix64_array(x: np.ndarray) -> np.ndarray:
    """``_fmix64`` on a uint64 array (numpy's array multiplies wrap modulo 2^64)."""
    x = x ^ (x >> np.uint64(33))
    x = x * np.uint64(0xFF51AFD7ED558CCD)
    x = x ^ (x >> np.uint64(33))
    x = x * np.uint64(0xC4CEB9FE1A85EC53)
    return x ^ (x >> np.uint64(33))


def _filter_top_k(scaled: mx.array, draw: _DrawColumns) -> mx.array:
    """Keep each row's k best (rows without top_k keep all): the k-th value comes from a
    partition at the largest k, not a sort of the whole vocabulary."""
    k_max = draw.k_max
    best = -mx.sort(mx.partition(-scaled, kth=k_max - 1, axis=-1)[:, :k_max], axis=-1)
    kth = mx.take_along_axis(best, draw.kth, axis=-1)
    kth = mx.where(draw.has_k, kth, -mx.inf)
    return mx.where(scaled < kth, -mx.inf, scaled)


def _filter_top_p(scaled: mx.array, top_p: mx.array) -> mx.array:
    probs = mx.softmax(scaled, axis=-1)
    desc = -mx.sort(-probs, axis=-1)
    before = mx.cumsum(desc, axis=-1) - desc  # mass strictly before each sorted token
    kept = before < top_p
    smallest_kept = mx.min(mx.where(kept, desc, mx.inf), axis=-1, keepdims=True)
    return mx.where(probs < smallest_kept, -mx.inf, scaled)


def _filter_min_p(scaled: mx.array, min_p: mx.array) -> mx.array:
    probs = mx.softmax(scaled, axis=-1)
    return mx.where(probs < min_p * mx.max(probs, axis=-1, keepdims=True), -mx.inf, scaled)


def _draw(logits: mx.array, batch: BatchParams) -> mx.array:
    """Sampled token per row (greedy rows get an argmax; their noise is zero)."""
    draw = batch.draw
    scaled = _scaled(logits, draw)
    noise = _keyed_gumbel(batch.noise_keys(), logits.shape[-1])
    return mx.argmax(scaled + mx.where(draw.sampled, noise, 0.0), axis=-1).astype(mx.uint32)


def scaled_filtered(logits: mx.array, rows: list[RowSampler]) -> mx.array:
    """Each row's logits over its temperature, top-k / top-p / min-p filtered (-inf): the
    log-weights a sampled row draws from (greedy rows: temperature 1, nothing filtered)."""
    params = [r.params for r in rows]
    return _scaled(logits, _DrawColumns(params, [not p.greedy for p in params],
                                        logits.shape[-1]))


def _scaled(logits: mx.array, draw: _DrawColumns) -> mx.array:
    # shifted so the best token is 0: large logits over a small temperature keep their
    # precision next to the noise (greedy params cover temperatures that would overflow)
    scaled = (logits - mx.max(logits, axis=-1, keepdims=True)) / draw.temps
    if draw.k_max > 0:
        scaled = _filter_top_k(scaled, draw)
    if draw.top_p is not None:
        scaled = _filter_top_p(scaled, draw.top_p)
    if draw.min_p is not None:
        scaled = _filter_min_p(scaled, draw.min_p)
    return scaled


def _adjust_rows(logits: mx.array, batch: BatchParams) -> mx.array:
    """Penalties and logit_bias of every row at once: one gather from the shared table."""
    if batch.penalty is None:
        return logits
    table, index = batch.penalty[:2]
    return _penalised(logits, batch.penalty[2:], *table.rows(index))


def adjust_with(logits: mx.array, rows: list[RowSampler], counts: mx.array, seen: mx.array,
                bias: mx.array) -> mx.array:
    """Penalties and bias from the given (B, V) counts (a verify step adds its drafts)."""
    users = [k for k, r in enumerate(rows) if r.slot is not None]
    return _penalised(logits, _penalty_columns(tuple(rows), users)[2:], counts, seen, bias)


def _penalised(logits: mx.array, columns: tuple, counts: mx.array, seen: mx.array,
               bias: mx.array) -> mx.array:
    rp, fp, pp, has_bias = columns
    penalised = mx.where(logits > 0, logits / rp, logits * rp)
    logits = mx.where(seen > 0, penalised, logits)
    logits = logits - fp * counts
    logits = logits - pp * (counts > 0)
    return logits + mx.where(has_bias, bias, 0.0)


def _column(values: list[float]) -> mx.array:
    return mx.array(values, dtype=mx.float32)[:, None]


def _record(tokens: mx.array, batch: BatchParams) -> None:
    """Advance every row's position; count the tokens of rows with penalties (one scatter)."""
    for r in batch.rows:
        r.position += 1
    if batch.record is not None:
        index, slots, table = batch.record
        table.record(slots, tokens[index])


def logprob_outputs(logits: mx.array, tokens: mx.array, rows: list[RowSampler]):
    """Logprob of each row's token and its best alternatives (None: no row asks)."""
    want = any(r.params.logprobs or r.params.top_logprobs for r in rows)
    return _logprob_outputs(logits, tokens, want, max(r.params.top_logprobs for r in rows))


def _logprob_outputs(logits: mx.array, tokens: mx.array, want: bool, k: int):
    if not want:
        return None, None, None
    logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
    chosen = mx.take_along_axis(logprobs, tokens[:, None].astype(mx.int32), axis=-1)[:, 0]
    if k == 0:
        return chosen, None, None
    top_ids = mx.argpartition(-logprobs, kth=k - 1, axis=-1)[:, :k]
    top_vals = mx.take_along_axis(logprobs, top_ids, axis=-1)
    order = mx.argsort(-top_vals, axis=-1)
    top_ids = mx.take_along_axis(top_ids, order, axis=-1)
    return chosen, top_ids, mx.take_along_axis(top_vals, order, axis=-1)


def apply_token_mask(logits: mx.array, allowed: mx.array) -> mx.array:
    """-inf where ``allowed`` ((B, ceil(V/32)) uint32, bit t%32 of word t//32) is 0, or
    plus ``allowed`` when it is an additive (B, V) float mask (0 / -inf, built on the host
    for a CPU device). Packed masks are unpacked by broadcast shifts (B, W, 32) -> (B, V)."""
    if allowed.dtype != mx.uint32:
        return logits + allowed
    rows, vocab = logits.shape
    shifts = mx.arange(32, dtype=mx.uint32)  # per call: a module-level array is bound to the
    # stream of the thread that imported it and fails on another engine thread
    flags = ((allowed[:, :, None] >> shifts) & 1).reshape(rows, -1)[:, :vocab]
    return mx.where(flags.astype(mx.bool_), logits, mx.array(-mx.inf, logits.dtype))


def sample(logits: mx.array, rows: list[RowSampler], allowed: mx.array | None = None,
           cache: SamplingCache | None = None) -> SampleResult:
    """Pick one token per row of ``logits`` (B, V); records each row's token.

    ``allowed``: optional packed per-row token masks (structured outputs), applied before
    penalties, bias and sampling; logprobs stay those of the unmasked distribution.
    ``cache``: where this batch's ``BatchParams`` are kept between steps."""
    vocab = logits.shape[-1]
    batch = cache.get(rows, vocab) if cache is not None else BatchParams(tuple(rows), vocab)
    raw = logits
    if allowed is not None:
        logits = apply_token_mask(logits, allowed)
    if batch.plain_greedy:
        tokens = mx.argmax(logits, axis=-1).astype(mx.uint32)
    else:
        adjusted = _adjust_rows(logits.astype(mx.float32), batch)
        if not batch.any_sampled:
            tokens = mx.argmax(adjusted, axis=-1).astype(mx.uint32)
        else:
            tokens = _draw(adjusted, batch)
    chosen, top_ids, top_vals = _logprob_outputs(raw.astype(mx.float32), tokens,
                                                 batch.want_logprobs, batch.top_logprobs)
    _record(tokens, batch)
    return SampleResult(tokens, chosen, top_ids, top_vals)
