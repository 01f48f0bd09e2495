"""Which proposed tokens the target keeps (MLX, engine thread; everything lazy).

One verify forward gives logits (B, W, V): position ``j`` of row ``b`` predicts the token
after ``[last, d_0 .. d_{j-1}]``. Row ``b`` brought ``n_b <= W - 1`` proposals ``d``.

- Greedy rows: ``d_j`` is kept while it equals the argmax (exact match), so the output is
  the one plain greedy decoding gives.
- Sampled rows: the standard speculative-sampling rule (Leviathan et al. 2023, Chen et
  al. 2023): keep ``d_j`` with probability ``min(1, p_j(d_j) / q_j(d_j))``; at the first
  rejection draw from the residual ``max(p_j - q_j, 0)`` normalised; when all are kept
  draw a bonus token from ``p_{n_b}``. ``q`` is the proposer's distribution, a point mass
  on ``d_j`` when it has none (n-gram), so acceptance is then ``p_j(d_j)``. ``p`` is exactly
  what plain sampling draws from: penalties (counting the proposals before ``j`` as
  generated), logit_bias, temperature, top-k / top-p / min-p. So the output distribution
  is the target's. Positions without a proposal have ``q = 0``: the residual is ``p``, a
  plain draw. Randomness comes from the row's (seed, output position) keys as in plain
  sampling: a seeded request repeats itself.

The result: per row ``kept = a + 1`` tokens ``d_0 .. d_{a-1}, c_a`` (``c_a`` the
correction or bonus token) and the target's logprobs of each.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx

from mlxserve.engine.sampler import (RowSampler, adjust_with, gumbel_noise, logprob_outputs,
                                     scaled_filtered)

_ACCEPT_SALT = 0x2545F491  # acceptance uniforms: a stream apart from the draws' noise


@dataclass
class Acceptance:
    tokens: mx.array  # (B, W) uint32: the first ``kept[b]`` of row b are its output
    kept: mx.array  # (B,) int32, 1 .. n_b + 1
    logprobs: mx.array | None  # (B * W,) logprob of each output token, when any row asks
    top_ids: mx.array | None  # (B * W, K)
    top_logprobs: mx.array | None

    def arrays(self) -> list:
        return [a for a in (self.tokens, self.kept, self.logprobs, self.top_ids,
                            self.top_logprobs) if a is not None]


def accept(logits: mx.array, rows: list[RowSampler], drafts: list[list[int]],
           draft_probs: list | None = None) -> Acceptance:
    """``logits`` (B, W, V) of a verify forward; ``drafts[b]``: row b's proposals
    (``len <= W - 1``); ``draft_probs[b]``: (n_b, V) or None (a point mass)."""
    batch, width, vocab = logits.shape
    flat_rows = [r for r in rows for _ in range(width)]
    padded = [list(d) + [0] * (width - len(d)) for d in drafts]
    d = mx.array(padded, dtype=mx.uint32)  # (B, W)
    has = mx.array([[j < len(dr) for j in range(width)] for dr in drafts])
    raw = logits.reshape(batch * width, vocab).astype(mx.float32)
    adjusted = _penalised(raw, rows, flat_rows, drafts, width)
    target = mx.argmax(adjusted, axis=-1).astype(mx.uint32).reshape(batch, width)
    keep, pick = target == d, target
    if not all(r.params.greedy for r in rows):
        keep_s, pick_s = _sampled(adjusted, flat_rows, d, has, draft_probs, (batch, width))
        greedy = mx.array([r.params.greedy for r in rows])[:, None]
        keep, pick = mx.where(greedy, keep, keep_s), mx.where(greedy, pick, pick_s)
    keep = keep & has
    accepted = mx.sum(mx.cumprod(keep.astype(mx.int32), axis=1), axis=1)  # (B,)
    columns = mx.arange(width)[None, :]
    tokens = mx.where(columns < accepted[:, None], d, pick).astype(mx.uint32)
    chosen, top_ids, top_vals = logprob_outputs(raw, tokens.reshape(-1), flat_rows)
    return Acceptance(tokens, (accepted + 1).astype(mx.int32), chosen, top_ids, top_vals)


def _penalised(raw: mx.array, rows: list[RowSampler], flat_rows: list[RowSampler],
               drafts: list[list[int]], width: int) -> mx.array:
    """Penalties and bias per position; position j counts the row's proposals before j."""
    users = [r for r in rows if r.slot is not None]
    if not users:
        return raw
    counts, seen, bias = users[0].table.rows([r.slot or 0 for r in rows])
    batch, vocab = counts.shape
    extra = _draft_counts(drafts, rows, width, vocab)
    counts = (counts[:, None] + extra).reshape(batch * width, vocab)
    seen = (seen[:, None] + extra).reshape(batch * width, vocab)
    bias = mx.repeat(bias, width, axis=0)
    return adjust_with(raw, flat_rows, counts, seen, bias)


def _draft_counts(drafts: list[list[int]], rows: list[RowSampler], width: int,
                  vocab: int) -> mx.array:
    """(B, W, V): at position j, how often each token occurs among the row's first j
    proposals (rows with penalties only: the others' counts are unused)."""
    index = [(b, j, tok) for b, (dr, r) in enumerate(zip(drafts, rows)) if r.has_penalties
             for i, tok in enumerate(dr) for j in range(i + 1, width)]
    extra = mx.zeros((len(rows), width, vocab), mx.float32)
    if not index:
        return extra
    b, j, t = (mx.array(list(col), dtype=mx.int32) for col in zip(*index))
    return extra.at[b, j, t].add(1.0)


def _sampled(adjusted: mx.array, flat_rows: list[RowSampler], d: mx.array, has: mx.array,
             draft_probs: list | None, shape: tuple[int, int]):
    """(keep, pick) of the rejection rule, for every row as if it were sampled."""
    batch, width = shape
    vocab = adjusted.shape[-1]
    scaled = scaled_filtered(adjusted, flat_rows)
    p = mx.softmax(scaled, axis=-1).reshape(batch, width, vocab)
    q = _proposal_dist(d, has, draft_probs, vocab)
    p_d = mx.take_along_axis(p, d[..., None].astype(mx.int32), axis=-1)[..., 0]
    q_d = mx.take_along_axis(q, d[..., None].astype(mx.int32), axis=-1)[..., 0]
    keys = [r.noise_key(j) for r, j in zip(flat_rows, list(range(width)) * batch)]
    u = _uniforms([k ^ _ACCEPT_SALT for k in keys]).reshape(batch, width)
    keep = u * q_d < p_d  # u < p/q without dividing (q_d > 0 where a proposal is)
    residual = mx.maximum(p - q, 0.0).reshape(batch * width, vocab)
    noise = gumbel_noise(keys, vocab)
    pick = mx.argmax(mx.log(residual) + noise, axis=-1).astype(mx.uint32)
    return keep, pick.reshape(batch, width)


def _proposal_dist(d: mx.array, has: mx.array, draft_probs: list | None, vocab: int
                   ) -> mx.array:
    """(B, W, V) q: the proposer's distributions, a one-hot where it gave none, 0 where
    the row has no proposal."""
    q = (mx.arange(vocab)[None, None, :] == d[..., None].astype(mx.int32)).astype(mx.float32)
    if draft_probs is not None and any(p is not None for p in draft_probs):
        width = d.shape[1]
        dense = [_pad_probs(p, width, vocab) if p is not None else None for p in draft_probs]
        given = mx.array([p is not None for p in draft_probs])[:, None, None]
        zeros = mx.zeros((width, vocab), mx.float32)
        q = mx.where(given, mx.stack([p if p is not None else zeros for p in dense]), q)
    return mx.where(has[..., None], q, 0.0)


def _pad_probs(probs: mx.array, width: int, vocab: int) -> mx.array:
    probs = probs.astype(mx.float32)
    missing = width - probs.shape[0]
    return mx.concatenate([probs, mx.zeros((missing, vocab), mx.float32)]) if missing else probs


def _uniforms(keys: list[int]) -> mx.array:
    """One uniform in (0, 1) per key: the Gumbel CDF of a one-token Gumbel draw."""
    return mx.exp(-mx.exp(-gumbel_noise(keys, 1)[:, 0]))
