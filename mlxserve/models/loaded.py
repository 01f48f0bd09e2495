"""The record a loader returns. Built on the engine thread (it holds MLX arrays)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlxserve.models.capabilities import ModelCapabilities


@dataclass
class LoadedModel:
    model: Any  # mlx.nn.Module in mlx-lm's calling convention: model(ids, cache=...) -> logits
    tokenizer: Any  # mlx_lm.tokenizer_utils.TokenizerWrapper (HF tokenizer + detokenizer)
    capabilities: ModelCapabilities
    name: str  # canonical name shown in /v1/models
    path: str  # local folder the weights/config were read from
    eos_token_ids: set[int] = field(default_factory=set)
    config: dict = field(default_factory=dict)  # the HF-style config.json contents
    # VLMs only: mlxserve.models.vlm.VisionFront (processors + vision tower); None for text.
    vision: Any = None
    # drafts loaded to serve this model, by resolved source (models/draft.py: shared_draft):
    # speculative decoding and SpecPrefill naming one source share one copy of its weights
    drafts: dict = field(default_factory=dict)
