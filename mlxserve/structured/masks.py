"""Masks of every constrained row of a step, filled into one numpy bitmask.

Rows without a constraint get all bits set (every token allowed). Several constrained
rows are filled in parallel by llguidance's thread pool (it drops the GIL), so the work
overlaps the device's forward pass of the same step.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_EXECUTOR: list[Any] = []  # one llguidance.LLExecutor, made on first use


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
