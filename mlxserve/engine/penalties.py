"""Penalty counts and logit biases of all requests as rows of shared matrices (MLX).

A request with repetition / presence / frequency penalties or a logit_bias owns one slot
of a ``PenaltyTable``: row ``slot`` of three (slots, V) float32 matrices, its output-token
counts, its prompt + output counts, and its bias. A step then costs one gather per matrix
for the whole batch (``rows``) and one scatter to record the sampled tokens, whatever the
batch size: no per-row slices, stacks or updates. Slots are reused; the matrices double
when full (rare). The runner owns one; ``table_for`` gives samplers made without one
(tests) a table per vocabulary size.
"""

from __future__ import annotations

import mlx.core as mx

_TABLES: dict[int, PenaltyTable] = {}


class PenaltyTable:
    def __init__(self, vocab: int, slots: int = 8):
        self.vocab = vocab
        self.counts = mx.zeros((slots, vocab), mx.float32)  # output tokens
        self.seen = mx.zeros((slots, vocab), mx.float32)  # prompt + output tokens
        self.bias = mx.zeros((slots, vocab), mx.float32)
        self._free = list(range(slots - 1, -1, -1))

    def allocate(self, prompt_tokens: list[int], bias: dict[int, float] | None,
                 output_tokens: list[int] = ()) -> int:
        """``output_tokens``: output a resumed (preempted) request had already produced."""
        if not self._free:
            self._grow()
        slot = self._free.pop()
        zeros = mx.zeros((self.vocab,), mx.float32)
        output = zeros.at[mx.array(list(output_tokens), dtype=mx.uint32)].add(1.0) \
            if output_tokens else zeros
        self.counts[slot] = output
        self.seen[slot] = output + zeros.at[mx.array(prompt_tokens, dtype=mx.uint32)].add(1.0)
        if bias:
            ids = mx.array([int(t) for t in bias], dtype=mx.uint32)
            values = mx.array([float(v) for v in bias.values()], dtype=mx.float32)
            self.bias[slot] = zeros.at[ids].add(values)
        else:
            self.bias[slot] = zeros
        return slot

    def release(self, slot: int) -> None:
        self._free.append(slot)

    def rows(self, slots: list[int] | mx.array) -> tuple[mx.array, mx.array, mx.array]:
        """(counts, seen, bias), each (B, V), of the given slots (a list or an int32 array)."""
        index = slots if isinstance(slots, mx.array) else mx.array(slots, dtype=mx.int32)
        return self.counts[index], self.seen[index], self.bias[index]

    def record(self, slots: list[int], tokens: mx.array) -> None:
        """Count ``tokens`` (one per slot, lazy) as output of their slots: one scatter."""
        index = mx.array(slots, dtype=mx.int32)
        self.counts = self.counts.at[index, tokens].add(1.0)
        self.seen = self.seen.at[index, tokens].add(1.0)

    def _grow(self) -> None:
        have = self.counts.shape[0]
        extra = mx.zeros((have, self.vocab), mx.float32)
        self.counts = mx.concatenate([self.counts, extra])
        self.seen = mx.concatenate([self.seen, extra])
        self.bias = mx.concatenate([self.bias, extra])
        self._free = list(range(2 * have - 1, have - 1, -1))


def table_for(vocab: int) -> PenaltyTable:
    if vocab not in _TABLES:
        _TABLES[vocab] = PenaltyTable(vocab)
    return _TABLES[vocab]
