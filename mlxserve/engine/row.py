"""The runner's device-side state of one admitted request (MLX arrays; engine thread)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import mlx.core as mx

from mlxserve.engine.request import GenerateRequest
from mlxserve.engine.sampler import RowSampler


@dataclass
class Row:
    request: GenerateRequest
    sampler: RowSampler
    cache: list | None  # own per-layer caches while prefilling; None once in a batch
    prompt: mx.array
    embeddings: mx.array | None = None
    position_ids: mx.array | None = None
    vision_extras: Any = None  # models.vlm.VisionExtras (rope delta, deepstack features)
    last_token: mx.array | None = None  # lazy (1,) first token, input of its first decode
    batch: Any = None  # the BatchCache holding this row's cache once it decodes
    prompt_lp: list = field(default_factory=list)  # PromptLogprobChunk per forward so far
    final_kv: tuple | None = None  # (length, per-layer state) copied as it left its batch
    sparse: Any = None  # engine.sparse_prefill.SparseRow while a SpecPrefill runs
    hidden: mx.array | None = None  # (hidden,) last hidden state of its latest decode (MTP)

    @property
    def rope_delta(self) -> int:
        return getattr(self.vision_extras, "rope_delta", 0)

    @property
    def done_decoding(self) -> bool:
        return self.sampler.position >= self.request.stop.max_tokens

    @property
    def wanted_top(self) -> int:
        p = self.sampler.params
        return p.top_logprobs if (p.logprobs or p.top_logprobs) else -1
