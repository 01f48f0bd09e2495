"""The forward split from sampling: logits together with the last hidden state."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from engine_support import reference_model
from mlx_lm.models.cache import make_prompt_cache

from mlxserve.engine.model_step import forward, forward_with_hidden


@pytest.mark.parametrize("family", ["llama", "qwen3"])
def test_hidden_state_comes_with_the_same_logits(tiny_dir, family):
    model, _ = reference_model(tiny_dir(family))
    tokens = mx.array([[5, 17, 42, 8, 99]])
    plain = forward(model, tokens, make_prompt_cache(model))
    logits, hidden = forward_with_hidden(model, tokens, make_prompt_cache(model))
    np.testing.assert_allclose(np.array(logits), np.array(plain), atol=1e-5)
    assert hidden.shape == (1, 5, model.args.hidden_size)
    # the hidden state is what the head reads: projecting it again gives the logits
    again = model.model.embed_tokens.as_linear(hidden)
    np.testing.assert_allclose(np.array(again), np.array(plain), atol=1e-5)
