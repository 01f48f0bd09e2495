"""M-RoPE position ids of one Qwen2-VL / Qwen2.5-VL prompt (numpy, no MLX).

Text tokens advance all three rows (time, height, width) together. A media block of
grid (t, h, w) patches (h, w after the spatial merge) takes positions
(start + t_i * time_scale, start + h_i, start + w_i); the text after it starts at the
block's largest position + 1. ``time_scale`` is 1 for images and Qwen2-VL videos; for
Qwen2.5-VL videos it is seconds per temporal patch x tokens_per_second, so temporal
positions follow absolute time (truncated to integers, as the reference model does).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MediaBlock:
    token_id: int  # the placeholder id the block's tokens carry
    grid_thw: tuple[int, int, int]  # in patches, before the spatial merge
    time_scale: float = 1.0


def _block_positions(block: MediaBlock, merge: int, start: int) -> np.ndarray:
    t, h, w = block.grid_thw
    h, w = h // merge, w // merge
    t_index = np.floor(np.arange(t) * block.time_scale).astype(np.int64)
    grid_t = np.repeat(t_index, h * w)
    grid_h = np.tile(np.repeat(np.arange(h), w), t)
    grid_w = np.tile(np.arange(w), t * h)
    return np.stack([grid_t, grid_h, grid_w]) + start


def mrope_positions(tokens: list[int] | np.ndarray, blocks: list[MediaBlock],
                    merge: int) -> tuple[np.ndarray, int]:
    """(3, L) positions and the decode delta (next position - L) of one prompt whose
    media blocks appear in ``blocks`` order."""
    tokens = np.asarray(tokens)
    pieces: list[np.ndarray] = []
    cursor, next_pos = 0, 0
    for block in blocks:
        t, h, w = block.grid_thw
        count = t * (h // merge) * (w // merge)
        found = np.flatnonzero(tokens[cursor:] == block.token_id)
        if found.size == 0:
            raise ValueError("a media block has no placeholder tokens left in the prompt")
        start = cursor + int(found[0])
        text_len = start - cursor
        pieces.append(np.broadcast_to(np.arange(text_len) + next_pos, (3, text_len)))
        media = _block_positions(block, merge, next_pos + text_len)
        pieces.append(media)
        next_pos = int(media.max()) + 1
        cursor = start + count
    tail = len(tokens) - cursor
    pieces.append(np.broadcast_to(np.arange(tail) + next_pos, (3, tail)))
    positions = np.concatenate(pieces, axis=1)
    return positions, int(positions.max()) + 1 - len(tokens)
