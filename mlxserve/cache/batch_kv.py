"""The engine-owned batch cache: rows of many requests decoding in one forward.

A ``BatchCache`` holds, for every model layer, a layer cache of its rows (``KVRows`` for
attention layers, ``ArrayRows`` for SSM layers) sharing one ``RowLayout`` (per-row
lengths and position deltas on the host). Rows are addressed by request id; their slot
order is the row order of the batch's inputs and outputs (``ids``).

- join: ``append`` copies one request's own per-layer caches (mlx-lm's ``KVCache``,
  ``RotatingKVCache``, ``ArraysCache``, as a single-stream prefill leaves them) into a
  free slot; ``absorb`` moves all rows of another batch in. Only the joining rows are
  copied (the buffers grow geometrically, so a growth copy is rare).
- leave: ``remove_rows`` closes the others up with one gather per buffer (none when only
  the last slots leave), no device sync.
- ``trim(rid, n)``: lowers that row's length (attention layers; lazy, host only).
- ``snapshot`` / ``restore``: the per-row state of non-trimmable (SSM) layers.
- ``advance(n, rows)``: after a forward of ``n`` tokens per row, the rows that keep them.
- ``nbytes``: what the buffers really hold; ``used_bytes``: the rows' own tokens.

Nothing here reads device values; everything is lazy.
"""

from __future__ import annotations

import mlx.core as mx

from mlxserve.cache.layout import RowLayout
from mlxserve.cache.rows import ArrayRows, KVRows


def _is_arrays(layer) -> bool:
    return hasattr(layer, "cache") and isinstance(getattr(layer, "cache"), list)


def _window(layer) -> int | None:
    return getattr(layer, "max_size", None)


def _row_kv(layer) -> tuple[mx.array | None, mx.array | None, int]:
    """(keys, values, first column) of a single-stream attention cache, in temporal order."""
    if layer.keys is None:
        return None, None, 0
    if hasattr(layer, "_temporal_order"):  # RotatingKVCache: the last tokens only
        if getattr(layer, "keep", 0):
            raise ValueError("rotating caches with kept tokens are not supported")
        keys = layer._temporal_order(layer.keys)
        values = layer._temporal_order(layer.values)
        count = min(keys.shape[2], layer.offset)
        keys, values = keys[..., -count:, :], values[..., -count:, :]
        return keys, values, layer.offset - count
    return layer.keys[..., :layer.offset, :], layer.values[..., :layer.offset, :], 0


class BatchCache:
    def __init__(self, prototype: list):
        """``prototype``: one request's per-layer caches (their kinds decide the layers')."""
        self.layout = RowLayout()
        self.layers = [ArrayRows(self.layout, len(p.cache)) if _is_arrays(p)
                       else KVRows(self.layout, _window(p)) for p in prototype]
        self.ids: list[str] = []
        self.tokens: mx.array | None = None  # (B,) next input token of each row

    # ---- queries ------------------------------------------------------------------
    @property
    def size(self) -> int:
        return len(self.ids)

    def slot(self, request_id: str) -> int:
        return self.ids.index(request_id)

    def length(self, request_id: str) -> int:
        return self.layout.lengths[self.slot(request_id)]

    @property
    def nbytes(self) -> int:
        return sum(layer.nbytes for layer in self.layers)

    def allocated_tokens(self) -> int:
        kv = next((c for c in self.layers if isinstance(c, KVRows) and c.keys is not None),
                  None)
        return 0 if kv is None else kv.keys.shape[0] * kv.keys.shape[2]

    def used_tokens(self) -> int:
        return sum(self.layout.lengths)

    # ---- joins and leaves ---------------------------------------------------------
    def append(self, request_id: str, caches: list, length: int, token: mx.array,
               delta: int = 0) -> None:
        """A request prefilled on its own caches joins (its ``token``: (1,) next input)."""
        slot = self.size
        for layer, own in zip(self.layers, caches):
            if isinstance(layer, ArrayRows):
                layer.append_rows(list(own.cache))
            else:
                keys, values, start = _row_kv(own)
                if keys is not None:
                    layer.write_row(slot, keys, values, start)
        self._add_ids([request_id], [length], [delta], token)

    def absorb(self, other: BatchCache) -> None:
        """All rows of ``other`` (same model) join this batch; ``other`` is spent."""
        first, columns = self.size, max(other.layout.lengths, default=0)
        for layer, theirs in zip(self.layers, other.layers):
            if isinstance(layer, ArrayRows):
                layer.append_rows(list(theirs.cache))
            else:
                layer.write_rows(first, theirs, other.size, columns)
        self._add_ids(other.ids, other.layout.lengths, other.layout.deltas, other.tokens)

    def _add_ids(self, ids: list[str], lengths: list[int], deltas: list[int],
                 tokens: mx.array) -> None:
        self.ids += list(ids)
        self.layout.lengths += list(lengths)
        self.layout.deltas += list(deltas)
        self.layout.changed()
        self.tokens = tokens if self.tokens is None else mx.concatenate([self.tokens, tokens])

    def remove(self, request_id: str) -> None:
        self.remove_rows([request_id])

    def remove_rows(self, request_ids: list[str]) -> None:
        """These rows leave together; the others close up in their order with one gather
        per buffer (none when only the last slots leave). One copy of each buffer however
        many leave: moving a row inside its own buffer would copy it whole per move
        anyway (MLX cannot update a buffer in place from a view of itself)."""
        gone = set(request_ids)
        order = [slot for slot, rid in enumerate(self.ids) if rid not in gone]
        if len(order) == self.size:
            return
        for layer in self.layers:
            if isinstance(layer, ArrayRows):
                layer.reorder(order)
            else:
                layer.keep_rows(order)
        self.ids = [self.ids[i] for i in order]
        self.layout.lengths = [self.layout.lengths[i] for i in order]
        self.layout.deltas = [self.layout.deltas[i] for i in order]
        self.layout.changed()
        if self.tokens is not None:
            self.tokens = self.tokens[mx.array(order, dtype=mx.int32)] if order else None

    # ---- per-row state ------------------------------------------------------------
    def trimmable(self) -> bool:
        return not any(isinstance(c, ArrayRows) for c in self.layers)

    def trim(self, request_id: str, n: int) -> int:
        """Drop the last ``n`` tokens of one row (attention layers only: SSM layers
        restore a snapshot instead). Returns how many were dropped."""
        if not self.trimmable():
            raise ValueError("this batch has layers that cannot be trimmed: restore a snapshot")
        slot = self.slot(request_id)
        n = min(n, self.layout.lengths[slot])
        self.layout.lengths[slot] -= n
        self.layout.changed()
        return n

    def set_delta(self, request_id: str, delta: int) -> None:
        self.layout.deltas[self.slot(request_id)] = delta
        self.layout.changed()

    def snapshot(self) -> dict:
        """What a rollback needs: lengths on the host and the SSM layers' state arrays."""
        return dict(lengths=list(self.layout.lengths), ids=list(self.ids),
                    arrays=[c.snapshot() if isinstance(c, ArrayRows) else None
                            for c in self.layers])

    def restore(self, snapshot: dict, request_ids: list[str]) -> None:
        """The given rows go back to ``snapshot`` (taken with the same rows in place)."""
        if snapshot["ids"] != self.ids:
            raise ValueError("the batch's rows changed since the snapshot")
        wanted = set(request_ids)
        chosen = [rid in wanted for rid in self.ids]
        for slot, pick in enumerate(chosen):
            if pick:
                self.layout.lengths[slot] = snapshot["lengths"][slot]
        self.layout.changed()
        rows = mx.array(chosen)
        for layer, arrays in zip(self.layers, snapshot["arrays"]):
            if arrays is not None:
                layer.restore(arrays, rows)

    def advance(self, n: int, request_ids: list[str] | None = None) -> None:
        """Rows (all when None) keep the ``n`` tokens the last forward wrote."""
        keep = None if request_ids is None else set(request_ids)
        self.layout.lengths = [length + n if keep is None or rid in keep else length
                               for rid, length in zip(self.ids, self.layout.lengths)]
        self.layout.changed()

    # ---- batched prefill ----------------------------------------------------------
    def begin_padded(self, real_lengths: list[int]) -> None:
        """Before a right-padded forward over fresh rows: SSM layers see the real lengths
        (their conv state and masks skip the padding)."""
        for layer in self.layers:
            if isinstance(layer, ArrayRows):
                layer.lengths = mx.array(real_lengths)

    def end_padded(self, real_lengths: list[int]) -> None:
        """After it: every row keeps only its real tokens (a per-row trim of the padding)."""
        for layer in self.layers:
            if isinstance(layer, ArrayRows):
                layer.lengths = None
                layer.left_padding = None
        self.layout.lengths = list(real_lengths)
        self.layout.changed()

    @classmethod
    def fresh(cls, prototype: list, ids: list[str]) -> BatchCache:
        """Empty rows for ``ids`` (a batched prefill writes them from column 0)."""
        batch = cls(prototype)
        batch.ids = list(ids)
        batch.layout.lengths = [0] * len(ids)
        batch.layout.deltas = [0] * len(ids)
        return batch


def mergeable(batch: BatchCache, lengths: list[int], slack: float = 1.25,
              floor_tokens: int = 0) -> bool:
    """Whether rows of ``lengths`` tokens may join ``batch`` without its buffers holding
    much more than the rows' own tokens: padded storage at most ``slack`` x the rows'
    tokens, or at most ``floor_tokens`` in all (small batches always merge)."""
    columns = max(max(batch.layout.lengths, default=0), max(lengths, default=0))
    padded = (batch.size + len(lengths)) * columns
    real = batch.used_tokens() + sum(lengths)
    return padded <= floor_tokens or padded <= slack * real
