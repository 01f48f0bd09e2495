"""Per-row lengths and positions of one batch of rows (host lists, device copies on demand).

Every layer cache of a ``BatchCache`` shares one ``RowLayout``: row ``r`` holds
``lengths[r]`` tokens (left-aligned in storage, columns ``[0, lengths[r])``) and decodes
at position ``lengths[r] + deltas[r]`` (a delta is non-zero when positions differ from
storage length: a sparse prefill, a reused prefix at another offset). The host lists are
the truth; the device arrays are rebuilt from them once per change, so reading a length
never waits for the device.
"""

from __future__ import annotations

import mlx.core as mx
from mlx_lm.models.base import create_causal_mask


class RowLayout:
    def __init__(self) -> None:
        self.lengths: list[int] = []
        self.deltas: list[int] = []
        self._device: dict = {}  # name -> device copy (or the scalar offset)

    @property
    def size(self) -> int:
        return len(self.lengths)

    def changed(self) -> None:
        self._device.clear()

    def aligned(self) -> bool:
        """All rows hold the same number of tokens: no mask, the fused attention path."""
        if "aligned" not in self._device:
            self._device["aligned"] = len(set(self.lengths)) <= 1
        return self._device["aligned"]

    def _array(self, name: str, values: list[int]) -> mx.array:
        if name not in self._device:
            self._device[name] = mx.array(values, dtype=mx.int32)
        return self._device[name]

    def lengths_array(self) -> mx.array:
        return self._array("lengths", self.lengths)

    def offset(self):
        """mlx-lm's ``cache.offset``: an int when every row is at one position (scalar
        RoPE offset, exactly the single-stream ops), else a (B,) array of positions."""
        if "offset" not in self._device:  # asked once per layer: computed once per step
            positions = [n + d for n, d in zip(self.lengths, self.deltas)]
            if len(set(positions)) <= 1:
                self._device["offset"] = positions[0] if positions else 0
            else:
                self._device["offset"] = mx.array(positions, dtype=mx.int32)
        return self._device["offset"]

    def window_start(self, width: int, window: int | None) -> int:
        """First storage column an aligned step of ``width`` tokens reads (sliding window
        layers read only their window when decoding one token)."""
        if window is None or width != 1 or not self.lengths:
            return 0
        return max(0, self.lengths[0] + 1 - window)

    def mask(self, width: int, window: int | None = None, return_array: bool = False):
        """The attention mask for a step of ``width`` new tokens per row, matching the keys
        ``KVRows.update_and_fetch`` returns for it."""
        if self.aligned():
            start = self.lengths[0] if self.lengths else 0
            if width == 1:
                return None
            if window is None or start + width <= window:
                return create_causal_mask(width, start) if return_array else "causal"
            return create_causal_mask(width, start, window_size=window)
        total = max(self.lengths) + width
        queries = self.lengths_array()[:, None] + mx.arange(width)[None, :]  # (B, W)
        keys = mx.arange(total)[None, None, :]
        visible = keys <= queries[:, :, None]
        if window is not None:
            visible = visible & (keys > queries[:, :, None] - window)
        return visible[:, None]  # (B, 1, W, T), broadcast over heads

    def columns(self, width: int, rows: int) -> mx.array:
        """(rows, 1, width, 1) storage columns of a step's new tokens (rows past ``size``
        are unused slots: they write at column 0)."""
        lengths = self.lengths + [0] * (rows - self.size)
        start = self._array(f"cols{rows}", lengths)
        return (start[:, None] + mx.arange(width)[None, :])[:, None, :, None]
