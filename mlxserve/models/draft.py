"""A second, smaller model that serves the target: speculative decoding's draft proposer and
SpecPrefill's token scorer load it here, once, the same way.

A draft must share the target's vocabulary (its token ids mean the same text); that is
checked at start-up, so a mismatch is one clear error rather than garbage output.

Both users ask ``shared_draft``: a source is loaded once per target (kept in
``LoadedModel.drafts``, by resolved source, so ``--draft-model`` and
``--specprefill-draft-model`` spelling one model differently still share it), and the
target's own source gives the target. Only weights and tokenizer are shared: the proposer
and the scorer each make their own caches, and neither changes the model (the scorer reads
attention through ``models/attention_scores``, an adapter over the layers, no patching).
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Callable

from mlxserve.config import ModelConfig
from mlxserve.errors import ModelLoadError
from mlxserve.models.loaded import LoadedModel
from mlxserve.models.loader import load_model

# Token ids compared between the two tokenizers besides the vocabulary size: a few at
# either end and spread through the middle (cheap, and different tokenizers differ there).
_PROBES = 64


def shared_draft(source: str, target: LoadedModel, target_cfg: ModelConfig,
                 load: Callable[[ModelConfig], LoadedModel] | None = None) -> LoadedModel:
    """The draft ``source`` for ``target``, loaded on first use and then shared. ``load``: a
    test's or benchmark's own model loader (its models; no vocabulary check); else
    ``load_draft_model``."""
    key = source_key(source)
    if key == source_key(target_cfg.model):
        return target  # the model drafts / scores for itself: its weights, own caches
    if key not in target.drafts:
        target.drafts[key] = (load(replace(target_cfg, model=source)) if load is not None
                              else load_draft_model(source, target, target_cfg))
    return target.drafts[key]


def source_key(source: str) -> tuple:
    """What ``source`` points at (its kind and real paths), so two spellings of one model
    compare equal; the string itself when it does not resolve (a loader's own names)."""
    from mlxserve.models.source import resolve_source

    try:
        resolved = resolve_source(source)
    except ModelLoadError:
        return ("unresolved", source)
    return (resolved.kind, tuple(os.path.realpath(p) if os.path.exists(p) else p
                                 for p in resolved.paths))


def load_draft_model(source: str, target: LoadedModel, target_cfg: ModelConfig
                     ) -> LoadedModel:
    """Load ``source`` (any source ``load_model`` takes) as a draft for ``target``, with the
    target's dtype and quantization settings; ModelLoadError if the vocabularies differ."""
    draft = load_model(replace(target_cfg, model=source, chat_template=None))
    reason = vocabulary_mismatch(target, draft)
    if reason is not None:
        raise ModelLoadError(f"the draft model {draft.name} cannot serve {target.name}: "
                             f"{reason}")
    return draft


def vocabulary_mismatch(target: LoadedModel, draft: LoadedModel) -> str | None:
    """Why ``draft``'s token ids do not mean what ``target``'s do; None when they do."""
    t_vocab, d_vocab = _vocab(target), _vocab(draft)
    if len(t_vocab) != len(d_vocab):
        return f"its tokenizer has {len(d_vocab)} tokens, the target's {len(t_vocab)}"
    for token_id in _probe_ids(len(t_vocab)):
        if t_vocab.get(token_id) != d_vocab.get(token_id):
            return (f"token {token_id} is {d_vocab.get(token_id)!r} in its tokenizer and "
                    f"{t_vocab.get(token_id)!r} in the target's")
    return None


def _vocab(loaded: LoadedModel) -> dict[int, str]:
    tokenizer = getattr(loaded.tokenizer, "_tokenizer", loaded.tokenizer)
    return {i: t for t, i in tokenizer.get_vocab().items()}


def _probe_ids(size: int) -> list[int]:
    step = max(1, size // _PROBES)
    return sorted(set(range(min(8, size))) | set(range(0, size, step))
                  | set(range(max(0, size - 8), size)))


def logits_width(target: LoadedModel) -> int:
    """The width of the target's logits: its embedding rows, which may exceed the
    tokenizer's size (a draft's proposal distributions are cut or padded to it)."""
    from mlxserve.models.hidden import text_trunk

    embed = getattr(text_trunk(target.model), "embed_tokens", None)
    if embed is not None and hasattr(embed, "weight"):
        return int(embed.weight.shape[0])
    return int(target.capabilities.vocab_size)
