"""Speculative-decoding methods by name: which keys each accepts in
``--speculative-config`` and the factory that builds its ``Proposer`` at start-up.

A factory is named as ``"module:function"`` and imported only when the method is used, so
a method's dependencies (a draft model's loader, MTP weights) cost nothing otherwise. Its
signature: ``factory(config: SpeculativeConfig, context: ProposerContext) -> Proposer``;
it runs on the engine thread after the target is loaded and raises (ModelLoadError,
ValueError) with a message the server prints as its start-up error.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from mlxserve.config import ModelConfig, SpeculativeConfig


@dataclass(frozen=True)
class Method:
    factory: str  # "module:function"
    keys: frozenset[str]  # keys of the JSON besides method / num_speculative_tokens
    required: frozenset[str] = frozenset()


METHODS: dict[str, Method] = {
    "ngram": Method("mlxserve.spec.ngram:make_ngram_proposer",
                    frozenset({"prompt_lookup_min", "prompt_lookup_max"})),
    "draft_model": Method("mlxserve.spec.draft:make_draft_proposer",
                          frozenset({"model"}), frozenset({"model"})),
    "mtp": Method("mlxserve.spec.mtp:make_mtp_proposer", frozenset()),
}


@dataclass(frozen=True)
class ProposerContext:
    """What a factory may use: the loaded target (models.loaded.LoadedModel: model,
    tokenizer, config, capabilities) and the model config it was loaded with."""

    target: Any
    model_config: ModelConfig


def build_proposer(config: SpeculativeConfig, context: ProposerContext):
    """The configured method's proposer (ValueError when the method is not built in)."""
    method = METHODS.get(config.method)
    if method is None:
        raise ValueError(f"unknown speculative method {config.method!r}")
    module_name, _, function = method.factory.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name != module_name:
            raise
        raise ValueError(f"speculative method {config.method!r} is not available in this "
                         "build") from None
    return getattr(module, function)(config, context)
