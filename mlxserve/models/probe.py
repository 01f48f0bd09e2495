"""Probe what a loaded model can do, from its config, caches, weights and chat template."""

from __future__ import annotations

import glob
import json
import os
import struct

from mlxserve.models.capabilities import ModelCapabilities

_CONTEXT_KEYS = ("max_position_embeddings", "max_sequence_length", "seq_length", "n_ctx")
_MTP_CONFIG_KEYS = ("num_nextn_predict_layers", "mtp_num_hidden_layers", "num_mtp_layers")
_PROBE_TOOL = {
    "type": "function",
    "function": {
        "name": "probe_tool_7f3a",
        "description": "probe",
        "parameters": {"type": "object", "properties": {}},
    },
}
_PROBE_MESSAGES = [{"role": "user", "content": "hi"}]


def _text_config(config: dict) -> dict:
    return {**config, **config.get("text_config", {})}


def context_length(config: dict) -> int:
    text = _text_config(config)
    for key in _CONTEXT_KEYS:
        value = text.get(key)
        if isinstance(value, int) and value > 0:
            return value
    return ModelCapabilities.context_length


def _safetensors_names(folder: str) -> list[str]:
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.isfile(index):
        with open(index, encoding="utf-8") as f:
            return list(json.load(f).get("weight_map", {}))
    names: list[str] = []
    for path in glob.glob(os.path.join(folder, "*.safetensors")):
        with open(path, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            names += [k for k in json.loads(f.read(size)) if k != "__metadata__"]
    return names


def has_mtp_heads(config: dict, folder: str) -> bool:
    text = _text_config(config)
    if any(int(text.get(key) or 0) > 0 for key in _MTP_CONFIG_KEYS):
        return True
    try:
        names = _safetensors_names(folder)
    except (OSError, ValueError, struct.error):
        return False
    return any(".mtp." in n or n.startswith("mtp.") for n in names)


def probe_caches(model) -> tuple[bool, bool]:
    """(cache_trimmable, has_sliding_window) from the caches mlx-lm builds for the model."""
    from mlx_lm.models.cache import make_prompt_cache

    return cache_kinds(make_prompt_cache(model))


def cache_kinds(caches: list) -> tuple[bool, bool]:
    """(cache_trimmable, has_sliding_window) of one request's per-layer caches. Sliding-
    window layers count as trimmable: the engine's batch cache keeps their full history;
    SSM / gated-delta state (per-row arrays, no per-token history) cannot be trimmed."""
    flat = _flatten_caches(caches)
    sliding = any(getattr(c, "max_size", None) is not None for c in flat)
    trimmable = not any(isinstance(getattr(c, "cache", None), list) for c in flat)
    return trimmable, sliding


def _flatten_caches(caches) -> list:
    flat = []
    for cache in caches:
        inner = getattr(cache, "caches", None)
        flat += _flatten_caches(inner) if isinstance(inner, (list, tuple)) else [cache]
    return flat


def _render(hf_tokenizer, **extra) -> str | None:
    try:
        return hf_tokenizer.apply_chat_template(
            _PROBE_MESSAGES, tokenize=False, add_generation_prompt=True, **extra
        )
    except Exception:  # noqa: BLE001 - any template error means "does not render this"
        return None


def probe_template(tokenizer) -> dict[str, bool]:
    hf = getattr(tokenizer, "_tokenizer", tokenizer)
    template = getattr(hf, "chat_template", None)
    if isinstance(template, dict):
        template = template.get("default") or next(iter(template.values()), None)
    if not template:
        return {"has_chat_template": False}
    plain = _render(hf)
    with_tools = _render(hf, tools=[_PROBE_TOOL])
    takes_thinking = "enable_thinking" in template
    opens = plain is not None and plain.rstrip().endswith("<think>")
    return {
        "has_chat_template": True,
        "template_has_tools": with_tools is not None and "probe_tool_7f3a" in with_tools,
        "template_has_thinking": takes_thinking,
        "template_has_reasoning_effort": "reasoning_effort" in template,
        "template_opens_thinking": opens,
    }


def probe_capabilities(
    model, tokenizer, config: dict, folder: str, dtype: str, quantization: str
) -> ModelCapabilities:
    text = _text_config(config)
    trimmable, sliding = probe_caches(model)
    vocab = int(text.get("vocab_size") or 0) or len(getattr(tokenizer, "vocab", {}) or {})
    return ModelCapabilities(
        model_type=str(config.get("model_type", "")),
        context_length=context_length(config),
        vocab_size=vocab,
        cache_trimmable=trimmable,
        has_sliding_window=sliding,
        has_mtp=has_mtp_heads(config, folder),
        quantization=quantization,
        dtype=dtype,
        **probe_template(tokenizer),
    )
