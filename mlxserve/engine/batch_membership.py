"""Which decode batch each row is in (MLX arrays moved, nothing read back; engine thread).

The ``Runner``'s batch-membership half, kept apart so runner.py stays about the step: a
row that is done or gone leaves its batch (keeping a copy of its KV for the prefix cache
when that is on); prefilled rows and group-prefilled batches join the first batch whose
buffers would not hold much more than its rows' tokens, else start a batch of their own.
It works on the runner's own fields (``rows``, ``batches``, ``joining``, ``prototype``,
``keep_final_kv``, ``merge_floor_tokens``).
"""

from __future__ import annotations

import mlx.core as mx

from mlxserve.cache.batch_kv import BatchCache, mergeable
from mlxserve.engine.prefix import final_kv, state_arrays
from mlxserve.engine.row import Row


class BatchMembership:
    def _settle(self, decode_ids: list[str]) -> None:
        """Before a decode: rows that are gone or done leave their batches; prefilled
        rows and batches join."""
        leaving = [(batch, [rid for rid in batch.ids if self._leaves(rid)])
                   for batch in self.batches + self.joining]
        leaving = [(batch, ids) for batch, ids in leaving if ids]
        rows = [self.rows[rid] for _, ids in leaving for rid in ids if rid in self.rows]
        self._keep_final_kv(rows)
        for batch, ids in leaving:
            batch.remove_rows(ids)
        for row in rows:
            row.batch = None
        self.batches = [b for b in self.batches if b.size]
        joining = [b for b in self.joining if b.size]
        self.joining = []
        for group in joining:
            self._place_batch(group)
        for rid in decode_ids:
            row = self.rows[rid]
            if row.batch is None and row.cache is not None and row.last_token is not None:
                self._place_row(rid, row)

    def _leaves(self, request_id: str) -> bool:
        row = self.rows.get(request_id)
        return row is None or row.done_decoding

    def _keep_final_kv(self, rows: list[Row]) -> None:
        """For the prefix cache: a copy of each leaving row's KV, all read from the
        buffers as they are now (before any removal rewrites them: a removal while a copy
        of the old buffer is pending cannot update it in place, so removals between copies
        would each copy the whole batch and keep every version alive), started at once."""
        if not self.keep_final_kv:
            return
        copies = []
        for row in rows:
            if row.sparse is None:
                row.final_kv = final_kv(row, start=False)
                if row.final_kv is not None:
                    copies += state_arrays(row.final_kv[1])
        if copies:
            mx.async_eval(copies)

    def _target(self, lengths: list[int]) -> BatchCache | None:
        for batch in self.batches:
            if mergeable(batch, lengths, floor_tokens=self.merge_floor_tokens):
                return batch
        return None

    def _place_batch(self, group: BatchCache) -> None:
        target = self._target(group.layout.lengths)
        if target is None:
            self.batches.append(group)
            return
        target.absorb(group)
        for rid in target.ids:
            self.rows[rid].batch = target

    def _place_row(self, rid: str, row: Row) -> None:
        length = len(row.request.prompt_tokens)
        target = self._target([length])
        if target is None:
            target = BatchCache(self.prototype)
            self.batches.append(target)
        target.append(rid, row.cache, length, row.last_token)
        row.cache, row.last_token, row.batch = None, None, target
