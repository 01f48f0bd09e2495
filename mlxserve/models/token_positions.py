"""RoPE at per-token positions, for a forward whose tokens are not contiguous.

mlx-lm's attention rotates queries and keys with ``self.rope(x, offset=cache.offset)``,
and ``mx.fast.rope`` takes one start position per batch row, then counts up along the
sequence. A sparse prefill (SpecPrefill) feeds one row whose kept tokens sit at scattered
prompt positions, so that attention can stay one fused causal kernel over storage.
``allow_token_positions(model)`` wraps each attention module's rope once: when a cache's
``offset`` is a ``TokenPositions``, the (1, H, L, D) input is seen as L rows of one token
each, which ``mx.fast.rope`` rotates with one offset per row, i.e. every token at its own
position. Any other call goes to the original rope unchanged, so decoding and dense
prefill run exactly the ops they ran before.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx
import mlx.nn as nn


class TokenPositions:
    """A cache ``offset`` that gives every token of a one-row forward its position."""

    def __init__(self, positions: mx.array):
        self.positions = positions  # (L,) int32


class _TokenPositionRope(nn.Module):
    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def __call__(self, x: mx.array, *args, **kwargs) -> mx.array:
        offset = kwargs.get("offset", args[0] if args else None)
        if not isinstance(offset, TokenPositions):
            return self.inner(x, *args, **kwargs)
        rows = x.transpose(2, 1, 0, 3)  # (1, H, L, D) -> (L, H, 1, D): one token per row
        return self.inner(rows, offset=offset.positions).transpose(2, 1, 0, 3)


def allow_token_positions(model: Any) -> bool:
    """Wrap every attention module's ``rope`` (once); False when the model has none."""
    if getattr(model, "_mlxserve_token_positions", None) is None:
        wrapped = 0
        for _, module in model.named_modules():
            rope = getattr(module, "rope", None) if isinstance(module, nn.Module) else None
            if isinstance(rope, nn.Module) and not isinstance(rope, _TokenPositionRope):
                module.rope = _TokenPositionRope(rope)
                wrapped += 1
        object.__setattr__(model, "_mlxserve_token_positions", wrapped > 0)
    return model._mlxserve_token_positions


def forbid_token_positions(model: Any) -> None:
    """After a failed forward: this model uses ``cache.offset`` beyond its rope."""
    object.__setattr__(model, "_mlxserve_token_positions", False)
