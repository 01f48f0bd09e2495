"""Masks of every constrained row of a step, filled into one numpy bitmask.

Rows without a constraint get all bits set (every token allowed). Several constrained
rows are filled in parallel by llguidance's thread pool (it drops the GIL), so the work
overlaps the device's forward pass of the same step.

How the mask reaches the sampler depends on the device: a GPU gets the packed bitmask
(B, ceil(V/32)) uint32, unpacked there; a CPU device gets ``additive_mask``: (B, V)
float32 0 / -inf built by a byte lookup in numpy, since MLX's select over a (64, 49k)
array costs ~50 ms on a CPU (unvectorized) where numpy's lookup plus an add cost ~20.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_EXECUTOR: list[Any] = []
_BYTE_BITS = (np.arange(256)[:, None] >> np.arange(8)[None, :]) & 1
_BYTE_BIAS = np.where(_BYTE_BITS == 1, np.float32(0.0), np.float32(-np.inf)).astype(np.float32)
# row b of _BYTE_BIAS: the 8 additive values of a mask byte b (bit k -> token 8 * byte + k)  # one llguidance.LLExecutor, made on first use


def _executor() -> Any:
    if not _EXECUTOR:
        import llguidance

        _EXECUTOR.append(llguidance.LLExecutor())
    return _EXECUTOR[0]


def fill_masks(constraints: list[Any], words: int) -> np.ndarray:
    """(B, words) int32 bitmask; row i from ``constraints[i]`` (None: all allowed)."""
    masks = np.full((len(constraints), words), -1, dtype=np.int32)
    live = [(i, c) for i, c in enumerate(constraints) if c is not None and c.error is None]
    if len(live) == 1:
        i, c = live[0]
        c.fill_mask(masks[i])
    elif live:
        masks[[i for i, _ in live]] = 0
        pairs = [(c.matcher, i) for i, c in live]
        _executor().unsafe_compute_mask_ptr(pairs, masks.ctypes.data, words * 4, len(masks))
        for i, c in live:
            c.check_mask(masks[i])
    for i, c in enumerate(constraints):
        if c is not None and c.error is not None:
            masks[i] = -1  # a failed row samples freely; its request is ended with the error
    return masks


def additive_mask(masks: np.ndarray, vocab: int) -> np.ndarray:
    """(B, vocab) float32: 0 where ``masks`` (little-endian packed bits) allows a token,
    -inf elsewhere."""
    bias = np.take(_BYTE_BIAS, masks.view(np.uint8), axis=0)  # (B, 4 * words, 8)
    return bias.reshape(len(masks), -1)[:, :vocab]
