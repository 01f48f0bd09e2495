"""The draft model's side of SpecPrefill (MLX, engine thread only): it reads the whole
prompt in the scheduler's chunks (its trunk only, no head), and with the last chunk runs
the prompt's tail through ``models/attention_scores`` and reads the scores back."""

from __future__ import annotations

from typing import Any

import mlx.core as mx
import numpy as np

from mlxserve.models.attention_scores import scoring_unsupported, tail_scores, trunk_forward


class DraftScorer:
    def __init__(self, model: Any, tail_tokens: int):
        self.model = model
        self.tail_tokens = tail_tokens

    def new_cache(self) -> list:
        from mlx_lm.models.cache import make_prompt_cache

        return make_prompt_cache(self.model)

    def unsupported(self) -> str | None:
        return scoring_unsupported(self.model, self.new_cache())

    def read(self, cache: list, prompt: mx.array, start: int, end: int) -> None:
        """Prompt positions [start, end) into the draft's cache, short of the tail."""
        end = min(end, self._tail_start(prompt))
        if end > start:
            trunk_forward(self.model, prompt[start:end][None], cache)
            mx.async_eval([c.state for c in cache])

    def scores(self, cache: list, prompt: mx.array) -> np.ndarray:
        """(N,) scores of every prompt position (the cache holds all but the tail)."""
        tail = prompt[self._tail_start(prompt):][None]
        return np.array(tail_scores(self.model, tail, cache), dtype=np.float32)

    def _tail_start(self, prompt: mx.array) -> int:
        return max(0, prompt.shape[0] - self.tail_tokens)
