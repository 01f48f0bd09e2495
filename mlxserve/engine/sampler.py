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
    keys = mx.array(row_keys, dtype=mx.uint32)[:, None]
    index = mx.arange(vocab, dtype=mx.uint32)[None, :] * mx.array(0x9E3779B1, dtype=mx.uint32)
    bits = _fmix32(_fmix32(keys ^ index) + keys)
    return -mx.log(-mx.log(open_uniform(bits)))


def open_uniform(bits: mx.array) -> mx.array:
    """uint32 bits → float32 strictly inside (0, 1): (2k + 1) / 2^24 for the top 23 bits k.
    Every value is exact in float32 (24-bit significand), from 2^-24 to 1 - 2^-24; 24 bits
    would round their top value to 1.0, whose noise is +inf."""
    return (bits >> 9).astype(mx.float32) * (2.0 ** -23) + 2.0 ** -24


def _row_values(rows: list[RowSampler], name: str, default: float) -> mx.array:
    return mx.array([getattr(r.params, name) if not r.params.greedy else default for r in rows],
                    dtype=mx.float32)


def _filter_top_k(scaled: mx.array, rows: list[RowSampler]) -> mx.array:
    """Keep each row's k best (rows without top_k keep all): the k-th value comes from a
    partition at the largest k, not a sort of the whole vocabulary."""
    vocab = scaled.shape[-1]
    ks = [min(r.params.top_k, vocab) if r.params.top_k > 0 and not r.params.greedy else 0
          for r in rows]
    k_max = max(ks)
    best = -mx.sort(mx.partition(-scaled, kth=k_max - 1, axis=-1)[:, :k_max], axis=-1)
    kth = mx.take_along_axis(best, mx.array([max(k, 1) for k in ks], dtype=mx.int32)[:, None] - 1,
                             axis=-1)
    kth = mx.where(mx.array(ks)[:, None] > 0, kth, -mx.inf)
    return mx.where(scaled < kth, -mx.inf, scaled)


def _filter_top_p(scaled: mx.array, rows: list[RowSampler]) -> mx.array:
    top_p = _row_values(rows, "top_p", 1.0)[:, None]
    probs = mx.softmax(scaled, axis=-1)
    desc = -mx.sort(-probs, axis=-1)
    before = mx.cumsum(desc, axis=-1) - desc  # mass strictly before each sorted token
    kept = before < top_p
    smallest_kept = mx.min(mx.where(kept, desc, mx.inf), axis=-1, keepdims=True)
    return mx.where(probs < smallest_kept, -mx.inf, scaled)


def _filter_min_p(scaled: mx.array, rows: list[RowSampler]) -> mx.array:
    min_p = _row_values(rows, "min_p", 0.0)[:, None]
    probs = mx.softmax(scaled, axis=-1)
    return mx.where(probs < min_p * mx.max(probs, axis=-1, keepdims=True), -mx.inf, scaled)


def _draw(logits: mx.array, rows: list[RowSampler]) -> mx.array:
    """Sampled token per row (greedy rows get an argmax; their noise is zero)."""
    scaled = scaled_filtered(logits, rows)
    noise = gumbel_noise([r.noise_key() for r in rows], logits.shape[-1])
    sampled = mx.array([not r.params.greedy for r in rows])[:, None]
    return mx.argmax(scaled + mx.where(sampled, noise, 0.0), axis=-1).astype(mx.uint32)


def scaled_filtered(logits: mx.array, rows: list[RowSampler]) -> mx.array:
    """Each row's logits over its temperature, top-k / top-p / min-p filtered (-inf): the
    log-weights a sampled row draws from (greedy rows: temperature 1, nothing filtered)."""
    temps = _row_values(rows, "temperature", 1.0)[:, None]
    # shifted so the best token is 0: large logits over a small temperature keep their
    # precision next to the noise (greedy params cover temperatures that would overflow)
    scaled = (logits - mx.max(logits, axis=-1, keepdims=True)) / temps
    if any(r.params.top_k > 0 and not r.params.greedy for r in rows):
        scaled = _filter_top_k(scaled, rows)
    if any(r.params.top_p < 1.0 and not r.params.greedy for r in rows):
        scaled = _filter_top_p(scaled, rows)
    if any(r.params.min_p > 0.0 and not r.params.greedy for r in rows):
        scaled = _filter_min_p(scaled, rows)
    return scaled


def _adjust_rows(logits: mx.array, rows: list[RowSampler]) -> mx.array:
    """Penalties and logit_bias of every row at once: one gather from the shared table;
    rows without them get neutral values (penalty 1 and 0, no bias)."""
    users = [r for r in rows if r.slot is not None]
    if not users:
        return logits
    counts, seen, bias = users[0].table.rows([r.slot or 0 for r in rows])
    return adjust_with(logits, rows, counts, seen, bias)


def adjust_with(logits: mx.array, rows: list[RowSampler], counts: mx.array, seen: mx.array,
                bias: mx.array) -> mx.array:
    """Penalties and bias from the given (B, V) counts (a verify step adds its drafts)."""
    p = [r.params if r.slot is not None else _NEUTRAL for r in rows]
    rp = _column([q.repetition_penalty for q in p])
    penalised = mx.where(logits > 0, logits / rp, logits * rp)
    logits = mx.where(seen > 0, penalised, logits)
    logits = logits - _column([q.frequency_penalty for q in p]) * counts
    logits = logits - _column([q.presence_penalty for q in p]) * (counts > 0)
    has_bias = mx.array([bool(q.logit_bias) for q in p])[:, None]
    return logits + mx.where(has_bias, bias, 0.0)


def _column(values: list[float]) -> mx.array:
    return mx.array(values, dtype=mx.float32)[:, None]


def _record(tokens: mx.array, rows: list[RowSampler]) -> None:
    """Advance every row's position; count the tokens of rows with penalties (one scatter)."""
    users = []
    for k, r in enumerate(rows):
        r.position += 1
        if r.has_penalties:
            users.append(k)
    if users:
        index = mx.array(users, dtype=mx.int32)
        rows[users[0]].table.record([rows[k].slot for k in users], tokens[index])


def logprob_outputs(logits: mx.array, tokens: mx.array, rows: list[RowSampler]):
    if not any(r.params.logprobs or r.params.top_logprobs for r in rows):
        return None, None, None
    logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
    chosen = mx.take_along_axis(logprobs, tokens[:, None].astype(mx.int32), axis=-1)[:, 0]
    k = max(r.params.top_logprobs for r in rows)
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


def sample(logits: mx.array, rows: list[RowSampler], allowed: mx.array | None = None
           ) -> SampleResult:
    """Pick one token per row of ``logits`` (B, V); records each row's token.

    ``allowed``: optional packed per-row token masks (structured outputs), applied before
    penalties, bias and sampling; logprobs stay those of the unmasked distribution."""
    raw = logits
    if allowed is not None:
        logits = apply_token_mask(logits, allowed)
    if all(r.params.greedy and not r.processes_logits for r in rows):
        tokens = mx.argmax(logits, axis=-1).astype(mx.uint32)
    else:
        logits32 = logits.astype(mx.float32)
        adjusted = _adjust_rows(logits32, rows)
        if all(r.params.greedy for r in rows):
            tokens = mx.argmax(adjusted, axis=-1).astype(mx.uint32)
        else:
            tokens = _draw(adjusted, rows)
    chosen, top_ids, top_vals = logprob_outputs(raw.astype(mx.float32), tokens, rows)
    _record(tokens, rows)
    return SampleResult(tokens, chosen, top_ids, top_vals)
