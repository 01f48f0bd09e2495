"""The engine's side of SpecPrefill: the draft scorer, which requests prefill sparsely,
and the counters (MLX only through the scorer; engine thread).

Which requests: text only (a media prompt's placeholder tokens are not what the draft
would read), not asking prompt logprobs (a sparse prefill skips positions), and only the
uncached suffix of a prefix-cache hit is scored and sparsified. The keep fraction comes
from ``spec.specprefill.plan``. A sparse prompt is never stored in the prefix cache (its
KV is not the dense prompt's); the core checks ``RequestState.sparse``.
"""

from __future__ import annotations

from mlxserve.config import EngineConfig, ModelConfig, SpecPrefillConfig
from mlxserve.engine.request import GenerateRequest
from mlxserve.engine.sparse_prefill import SparseRow
from mlxserve.errors import InvalidRequest, ModelLoadError
from mlxserve.spec.specprefill.plan import keep_fraction
from mlxserve.spec.specprefill.select import Selection


class EngineSpecPrefill:
    def __init__(self, config: SpecPrefillConfig, scorer=None, window: int = 0):
        self.config = config
        self.scorer = scorer  # spec.specprefill.scoring.DraftScorer; None: no draft
        # a sliding-window target keeps its window's tail dense (its layers read it)
        self.selection = Selection(config.chunk_tokens, config.sink_tokens,
                                   max(config.tail_tokens, window))
        self._plans: dict[str, float] = {}  # request id -> keep fraction, admission → add
        self.requests = 0  # sparse prefills planned
        self.tokens_skipped = 0  # prompt tokens the target did not prefill

    @classmethod
    def load(cls, engine_config: EngineConfig, model_config: ModelConfig, target,
             prototype: list, loader=None) -> EngineSpecPrefill:
        """Load the draft (when a source is set) and check it can score. ``loader``: the
        engine's own model loader when a test or benchmark gave one (its models, its
        vocabularies); else ``models.draft`` loads it and checks the vocabulary."""
        config, source = engine_config.specprefill, engine_config.specprefill_draft()
        window = max((getattr(c, "max_size", 0) or 0 for c in prototype), default=0)
        if source is None:
            return cls(config, window=window)
        from mlxserve.spec.specprefill.scoring import DraftScorer

        draft = _load_draft(source, target, model_config, loader)
        scorer = DraftScorer(draft.model, config.tail_tokens)
        reason = scorer.unsupported()
        if reason is not None:
            raise ModelLoadError(f"the draft model {draft.name} cannot score prompts for "
                                 f"SpecPrefill: {reason}")
        return cls(config, scorer, window)

    def check(self, request: GenerateRequest) -> None:
        asked = request.specprefill
        if asked is not None and asked.enabled and self.scorer is None:
            raise InvalidRequest("'specprefill' needs a draft model: this server was started "
                                 "without --specprefill-draft-model", param="specprefill")

    def plan(self, request: GenerateRequest, cached: int) -> bool:
        """At admission: whether this request's prefill is sparse (remembered for add)."""
        if (self.scorer is None or request.multimodal is not None
                or request.prompt_logprobs is not None):
            return False
        asked = request.specprefill
        keep = keep_fraction(self.config, asked.enabled if asked else None,
                             asked.keep_pct if asked else None,
                             len(request.prompt_tokens) - cached)
        if keep is None:
            return False
        self._plans[request.request_id] = keep
        return True

    def take(self, request_id: str, cached: int) -> SparseRow | None:
        keep = self._plans.pop(request_id, None)
        return None if keep is None else SparseRow(cached, keep,
                                                   width=self.selection.chunk_tokens)

    def forget(self, request_id: str) -> None:
        self._plans.pop(request_id, None)

    def scored(self, skipped: int) -> None:
        self.requests += 1
        self.tokens_skipped += skipped


def _load_draft(source: str, target, model_config: ModelConfig, loader):
    """The speculative decoding draft's loaded model when it names the same source (one
    copy of the weights; the scorer makes its own caches)."""
    from mlxserve.models.draft import shared_draft

    return shared_draft(source, target, model_config, loader)
