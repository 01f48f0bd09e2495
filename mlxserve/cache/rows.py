"""Layer caches of a batch in mlx-lm's cache protocol (``offset``, ``update_and_fetch``,
``make_mask``, ``state``), so mlx-lm / mlx-vlm model code runs on them unpatched.

``KVRows``: one attention layer. Rows sit in slots ``0..B-1`` of one (slots, heads,
columns, dim) buffer, each row left-aligned (its token ``i`` at column ``i``), so a row's
length is just a host integer: trimming a row is lowering it, rows never get padded to
each other, and a row joins by writing its own columns into a free slot. When all rows
have one length a step writes one slice and reads a prefix of the buffer: the fused,
mask-free attention path, the exact ops of a single-stream ``KVCache``. Otherwise each
row writes at its own column (one scatter) and reads through a mask. Sliding-window
layers keep full history and read only their window (so any row can be trimmed).

``ArrayRows``: one SSM / gated-delta layer (``ArraysCache`` subclass: model code checks
for it): per-row state arrays that cannot be trimmed, so they are snapshotted and restored.
"""

from __future__ import annotations

import mlx.core as mx
from mlx_lm.models.cache import ArraysCache

from mlxserve.cache.layout import RowLayout

COLUMN_STEP = 16  # storage columns are allocated in multiples of this


def _round_up(n: int, step: int) -> int:
    return -(-n // step) * step


class KVRows:
    def __init__(self, layout: RowLayout, window: int | None = None):
        self.layout = layout
        self.window = window
        self.keys: mx.array | None = None
        self.values: mx.array | None = None

    # ---- mlx-lm's protocol --------------------------------------------------------
    @property
    def offset(self):
        return self.layout.offset()

    def make_mask(self, N: int, return_array: bool = False, window_size: int | None = None,
                  **_):
        return self.layout.mask(N, window_size or self.window, return_array)

    def update_and_fetch(self, keys: mx.array, values: mx.array):
        layout, width = self.layout, keys.shape[2]
        rows, longest = layout.size, max(layout.lengths)
        self.reserve(rows, longest + width, keys, values)
        if layout.aligned():
            at = layout.lengths[0]
            self.keys[:rows, :, at:at + width, :] = keys
            self.values[:rows, :, at:at + width, :] = values
            start = layout.window_start(width, self.window)
            return (self.keys[:rows, :, start:at + width, :],
                    self.values[:rows, :, start:at + width, :])
        slots = self.keys.shape[0]
        columns = layout.columns(width, slots)
        self.keys = mx.put_along_axis(self.keys, columns, _pad_rows(keys, slots), axis=2)
        self.values = mx.put_along_axis(self.values, columns, _pad_rows(values, slots), axis=2)
        total = longest + width
        return self.keys[:rows, :, :total, :], self.values[:rows, :, :total, :]

    @property
    def state(self):
        rows, longest = self.layout.size, max(self.layout.lengths, default=0)
        if self.keys is None:
            return None, None
        return self.keys[:rows, :, :longest, :], self.values[:rows, :, :longest, :]

    def is_trimmable(self) -> bool:
        return True

    @property
    def nbytes(self) -> int:
        return 0 if self.keys is None else self.keys.nbytes + self.values.nbytes

    # ---- storage ------------------------------------------------------------------
    def reserve(self, rows: int, columns: int, like_k: mx.array, like_v: mx.array) -> None:
        """Make room for ``rows`` slots of ``columns`` tokens (amortized: growth adds an
        eighth, so a batch that grows token by token copies rarely)."""
        if self.keys is None:
            self.keys = _zeros(like_k, rows, _round_up(columns, COLUMN_STEP))
            self.values = _zeros(like_v, rows, _round_up(columns, COLUMN_STEP))
            return
        have_rows, have_cols = self.keys.shape[0], self.keys.shape[2]
        if rows <= have_rows and columns <= have_cols:
            return
        new_rows = rows if rows <= have_rows else max(rows, have_rows + have_rows // 8)
        new_rows = max(new_rows, have_rows)
        new_cols = have_cols if columns <= have_cols else _round_up(
            columns + columns // 8, COLUMN_STEP)
        self.keys = _regrow(self.keys, new_rows, new_cols)
        self.values = _regrow(self.values, new_rows, new_cols)

    def write_row(self, slot: int, keys: mx.array, values: mx.array, start: int) -> None:
        """Copy one row's keys/values (1, heads, n, dim) to columns [start, start + n)."""
        n = keys.shape[2]
        self.reserve(slot + 1, start + n + 1, keys, values)
        self.keys[slot:slot + 1, :, start:start + n, :] = keys
        self.values[slot:slot + 1, :, start:start + n, :] = values

    def write_rows(self, first: int, other: KVRows, rows: int, columns: int) -> None:
        """Copy the first ``rows`` slots of another batch's layer into slots from ``first``."""
        if other.keys is None:
            return
        keys = other.keys[:rows, :, :columns, :]
        values = other.values[:rows, :, :columns, :]
        self.reserve(first + rows, columns + 1, keys, values)
        self.keys[first:first + rows, :, :columns, :] = keys
        self.values[first:first + rows, :, :columns, :] = values

    def keep_rows(self, order: list[int]) -> None:
        """Slot ``i`` takes old slot ``order[i]``'s row (rows leaving); the slots stay
        allocated unless at most half are used."""
        if self.keys is None:
            return
        slots = self.keys.shape[0]
        if order == list(range(len(order))):  # only the last slots left: nothing moves
            self.shrink(len(order))
            return
        keep = order if len(order) <= slots // 2 else order + [0] * (slots - len(order))
        index = mx.array(keep, dtype=mx.int32)
        self.keys, self.values = self.keys[index], self.values[index]

    def shrink(self, rows: int) -> None:
        """Give back slots when at most half are used."""
        if self.keys is not None and 0 < rows <= self.keys.shape[0] // 2:
            self.keys = mx.contiguous(self.keys[:rows])
            self.values = mx.contiguous(self.values[:rows])


class ArrayRows(ArraysCache):
    def __init__(self, layout: RowLayout, size: int):
        super().__init__(size)
        self.layout = layout

    def append_rows(self, states: list) -> None:
        """Add rows given as per-state arrays with a leading row axis (None = zeros)."""
        merged = []
        for mine, theirs in zip(self.cache, states):
            if theirs is None and mine is None:
                merged.append(None)
                continue
            like = theirs if theirs is not None else mine
            count = self.layout.size if mine is None else 0
            mine = mine if mine is not None else mx.zeros((count,) + like.shape[1:], like.dtype)
            merged.append(mx.concatenate([mine, theirs]) if theirs is not None else mine)
        self.cache = merged

    def reorder(self, order: list[int]) -> None:
        index = mx.array(order, dtype=mx.int32)
        self.cache = [c[index] if c is not None else None for c in self.cache]

    def snapshot(self) -> list:
        return list(self.cache)  # MLX arrays are immutable: holding them is the snapshot

    def restore(self, snapshot: list, rows: mx.array) -> None:
        """Rows where ``rows`` (B,) is True take their state back from ``snapshot``."""
        restored = []
        for now, before in zip(self.cache, snapshot):
            if now is None or before is None:
                restored.append(now if before is None else before)
                continue
            pick = rows.reshape((-1,) + (1,) * (now.ndim - 1))
            restored.append(mx.where(pick, before, now))
        self.cache = restored


def _zeros(like: mx.array, rows: int, columns: int) -> mx.array:
    return mx.zeros((rows, like.shape[1], columns, like.shape[3]), like.dtype)


def _regrow(old: mx.array, rows: int, columns: int) -> mx.array:
    new = _zeros(old, rows, columns)
    new[:old.shape[0], :, :old.shape[2], :] = old
    return new


def _pad_rows(x: mx.array, rows: int) -> mx.array:
    if x.shape[0] == rows:
        return x
    pad = mx.zeros((rows - x.shape[0],) + x.shape[1:], x.dtype)
    return mx.concatenate([x, pad])
