"""The text decoder of a VLM: its language model (same arrays, no copy) in mlx-lm's
calling convention, so the engine runs text and media requests on one module.

Imported on the engine thread (it imports MLX).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import mlx.core as mx
import mlx.nn as nn

if TYPE_CHECKING:
    from mlxserve.models.vlm import VisionExtras, VisionFront


class VLMTextDecoder(nn.Module):
    """The VLM's language model in mlx-lm's convention:
    ``decoder(ids, cache=..., input_embeddings=..., position_ids=..., ...) -> logits``.

    Positions are always passed explicitly to the wrapped module (it keeps per-call
    state otherwise): for M-RoPE, text positions are cache offset + ``rope_deltas``
    (one per row, from ``VisionExtras.rope_delta``; 0 for text-only requests)."""

    def __init__(self, vlm: Any, vision: VisionFront):
        super().__init__()
        self.language_model = vlm.language_model  # shared arrays, no copy
        self._mrope = vision.mrope
        self._make_cache = vision.make_text_cache

    @property
    def layers(self):
        return self.language_model.model.layers

    def make_cache(self):
        return self._make_cache()

    def text_positions(self, inputs: mx.array, cache, rope_deltas) -> mx.array:
        batch, length = inputs.shape
        offset = cache[0].offset if cache and cache[0] is not None else 0
        start = mx.broadcast_to(mx.array(offset).reshape(-1), (batch,))
        if rope_deltas is not None:
            start = start + mx.array(rope_deltas).reshape(-1)
        positions = start[:, None] + mx.arange(length)[None, :]
        return mx.broadcast_to(positions[None], (3, batch, length))

    def __call__(self, inputs: mx.array, cache=None, input_embeddings=None,
                 position_ids=None, rope_deltas=None,
                 vision_extras: VisionExtras | None = None) -> mx.array:
        if self._mrope and position_ids is None:
            position_ids = self.text_positions(inputs, cache, rope_deltas)
        if not self._mrope:
            out = self.language_model(inputs, inputs_embeds=input_embeddings, cache=cache)
        elif vision_extras is not None and vision_extras.deepstack_embeds is not None:
            out = self.language_model(
                inputs, inputs_embeds=input_embeddings, cache=cache,
                position_ids=position_ids,
                visual_pos_masks=vision_extras.visual_pos_masks,
                deepstack_visual_embeds=vision_extras.deepstack_embeds)
        else:
            out = self.language_model(inputs, inputs_embeds=input_embeddings, cache=cache,
                                      position_ids=position_ids)
        return getattr(out, "logits", out)
