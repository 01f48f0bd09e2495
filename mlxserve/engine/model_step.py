"""The forward of one step, split from sampling (MLX, engine thread only).

``forward`` is the one place the engine calls the model: logits for the given tokens on
the given caches. ``forward_with_hidden`` also returns the last hidden state (what a
multi-token-prediction head consumes); it goes through a models/ adapter when the model
exposes its trunk (``model.model``) and its head (``lm_head`` or tied embeddings).
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx


def forward(model: Any, tokens: mx.array, cache: list, **extra) -> mx.array:
    """(B, L) token ids → (B, L, V) logits (``extra``: input_embeddings, position_ids, ...)."""
    return model(tokens, cache=cache, **extra)


def forward_with_hidden(model: Any, tokens: mx.array, cache: list) -> tuple[mx.array,
                                                                          mx.array]:
    """(logits (B, L, V), last hidden state (B, L, hidden)) for a text model."""
    from mlxserve.models.hidden import logits_and_hidden

    return logits_and_hidden(model, tokens, cache)
