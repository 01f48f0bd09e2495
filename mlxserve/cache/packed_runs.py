"""Short runs of one row's tokens at scattered positions, prefilled in one forward.

A sparse prefill (SpecPrefill) keeps many short runs of prompt tokens, each at its own
original position; one forward per run would be one small, launch-bound forward each.
Here ``R`` runs of ``S`` tokens are fed as ``R`` rows of one forward: RoPE takes a (R,)
offset (each row starts at its run's position), every row's keys land, in order, in the
one real row's storage (columns ``start .. start + R*S``), and each row reads that storage
(broadcast over the rows) through a mask that lets a token see exactly the tokens stored
before it and itself (and, for a sliding-window layer, only its window of them). So the
result is the one-run-at-a-time prefill's, in one forward.

``PackedLayer`` speaks mlx-lm's cache protocol over a ``KVRows`` layer of a one-row batch.
"""

from __future__ import annotations

import mlx.core as mx

from mlxserve.cache.rows import KVRows


class PackedRuns:
    def __init__(self, start: int, positions: list[int], width: int):
        self.start = start  # storage column of the first run's first token
        self.rows, self.width = len(positions), width
        self.positions = mx.array(positions, dtype=mx.int32)  # (R,) RoPE offsets
        self._masks: dict = {}

    @property
    def total(self) -> int:
        return self.start + self.rows * self.width

    def mask(self, window: int | None) -> mx.array:
        """(R, 1, S, T): row r's token i (storage column start + r*S + i) sees columns up
        to its own (within ``window`` of it, for a sliding-window layer)."""
        if window not in self._masks:
            own = (self.start + mx.arange(self.rows)[:, None] * self.width
                   + mx.arange(self.width)[None, :])[:, :, None]
            keys = mx.arange(self.total)[None, None, :]
            visible = keys <= own
            if window is not None:
                visible = visible & (keys > own - window)
            self._masks[window] = visible[:, None]
        return self._masks[window]


class PackedLayer:
    def __init__(self, kv: KVRows, runs: PackedRuns):
        self.kv, self.runs = kv, runs

    @property
    def offset(self) -> mx.array:
        return self.runs.positions

    def make_mask(self, N: int, return_array: bool = False, window_size: int | None = None,
                  **_):
        return self.runs.mask(window_size or self.kv.window)

    def update_and_fetch(self, keys: mx.array, values: mx.array):
        rows, heads, width, dim = keys.shape
        flat = (1, heads, rows * width, dim)
        self.kv.write_row(0, keys.transpose(1, 0, 2, 3).reshape(flat),
                          values.transpose(1, 0, 2, 3).reshape(flat), self.runs.start)
        total = self.runs.total
        k, v = self.kv.keys[:1, :, :total, :], self.kv.values[:1, :, :total, :]
        return (mx.broadcast_to(k, (rows, heads, total, dim)),
                mx.broadcast_to(v, (rows, heads, total, v.shape[-1])))

    @property
    def state(self):
        return self.kv.state

    def is_trimmable(self) -> bool:
        return True


def packable(layers: list) -> bool:
    """Every layer an attention ``KVRows`` (SSM state cannot take runs side by side)."""
    return all(isinstance(layer, KVRows) for layer in layers)
