"""Logits together with the last hidden state, for mlx-lm text models (an explicit
adapter, no patching): the trunk ``model.model(inputs, cache)`` returns the final-norm
hidden state, the head is the text model's ``lm_head`` or the tied embedding
(``embed_tokens.as_linear``). Multi-token-prediction heads consume that hidden state.

Some families wrap the text model (Qwen3.5: ``model.language_model`` holds ``lm_head``
while ``model.model`` reaches its trunk), so the head is looked up on the text model.
"""

from __future__ import annotations

from typing import Any, Callable

import mlx.core as mx


def text_trunk(model: Any) -> Any:
    return getattr(model, "model", None)


def _text_model(model: Any) -> Any:
    return getattr(model, "language_model", model)


def has_trunk(model: Any) -> bool:
    trunk = text_trunk(model)
    return trunk is not None and (hasattr(_text_model(model), "lm_head")
                                  or hasattr(getattr(trunk, "embed_tokens", None), "as_linear"))


def output_head(model: Any) -> Callable[[mx.array], mx.array]:
    """What turns a final-norm hidden state into logits: ``lm_head`` or tied embeddings."""
    if not has_trunk(model):
        raise TypeError(f"{type(model).__name__} does not expose its trunk and head")
    text = _text_model(model)
    if hasattr(text, "lm_head"):
        return text.lm_head
    return text_trunk(model).embed_tokens.as_linear


def logits_and_hidden(model: Any, tokens: mx.array, cache: list) -> tuple[mx.array,
                                                                        mx.array]:
    head = output_head(model)
    hidden = text_trunk(model)(tokens, cache)
    return head(hidden), hidden
