"""Logits together with the last hidden state, for mlx-lm text models (an explicit
adapter, no patching): the trunk ``model.model(inputs, cache)`` returns the final-norm
hidden state, the head is ``lm_head`` or the tied embedding (``embed_tokens.as_linear``).
Multi-token-prediction heads consume that hidden state.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx


def has_trunk(model: Any) -> bool:
    trunk = getattr(model, "model", None)
    return trunk is not None and (hasattr(model, "lm_head")
                                  or hasattr(getattr(trunk, "embed_tokens", None), "as_linear"))


def logits_and_hidden(model: Any, tokens: mx.array, cache: list) -> tuple[mx.array,
                                                                        mx.array]:
    if not has_trunk(model):
        raise TypeError(f"{type(model).__name__} does not expose its trunk and head")
    hidden = model.model(tokens, cache)
    if hasattr(model, "lm_head"):
        return model.lm_head(hidden), hidden
    return model.model.embed_tokens.as_linear(hidden), hidden
