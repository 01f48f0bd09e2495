"""Multi-token-prediction (MTP) heads of Qwen3.5, Qwen3.5-MoE and Qwen3-Next checkpoints:
an explicit adapter, since mlx-lm's loaders drop the ``mtp.*`` weights (no patching).

The checkpoint layout (top-level ``mtp.`` keys, Hugging Face names):

- ``mtp.pre_fc_norm_embedding.weight``, ``mtp.pre_fc_norm_hidden.weight`` (hidden,): RMS
  norms of the next token's embedding and of the target's last hidden state;
- ``mtp.fc.weight`` (hidden, 2 * hidden): projects ``concat([embedding, hidden])`` (the
  embedding first) back to the hidden size;
- ``mtp.layers.{i}.*``: one full-attention decoder layer of the target's shapes (gated
  queries, q/k norms, partial RoPE) with a dense MLP or the target's MoE block (Qwen3.5-MoE
  stores experts fused: ``experts.gate_up_proj`` (E, 2I, hidden), ``experts.down_proj``;
  Qwen3-Next one tensor per expert: ``experts.{e}.gate_proj.weight`` ...);
- ``mtp.norm.weight``: the final norm; the logits come from the target's own ``lm_head``
  (or tied embeddings), and the embedding is the target's: no second copy of either.

RMS norm weights are stored zero-centred (the norm scales by ``1 + w``) in Hugging Face
checkpoints; mlx-lm shifts the trunk's by one when it converts such a checkpoint (its
conv1d weights not yet in MLX order), and this adapter does the same for the head's.

A step: ``h' = layer(fc([norm_e(embed(t)), norm_h(h)]))`` on the head's own KV cache, then
``norm(h')`` is both the next draft's hidden input and, through the target's head, its
logits. Several layers (``mtp_num_hidden_layers`` > 1) take draft steps in turn.
"""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx_lm.models.base import create_attention_mask
from mlx_lm.models.cache import KVCache
from mlx_lm.models.qwen3_next import Qwen3NextAttention, Qwen3NextMLP, Qwen3NextSparseMoeBlock

from mlxserve.errors import ModelLoadError
from mlxserve.models.hidden import output_head, text_trunk

PREFIX = "mtp."
MTP_MODEL_TYPES = ("qwen3_5", "qwen3_5_moe", "qwen3_next")  # checkpoints with this layout
_EXPERT_PARTS = ("gate_proj", "up_proj", "down_proj")


class MTPDecoderLayer(nn.Module):
    """One full-attention layer of the target's shapes (mlx-lm's Qwen3-Next blocks)."""

    def __init__(self, args: Any, moe: bool):
        super().__init__()
        self.self_attn = Qwen3NextAttention(args)
        self.input_layernorm = nn.RMSNorm(args.hidden_size, eps=args.rms_norm_eps)
        self.post_attention_layernorm = nn.RMSNorm(args.hidden_size, eps=args.rms_norm_eps)
        self.mlp = (Qwen3NextSparseMoeBlock(args) if moe
                    else Qwen3NextMLP(args.hidden_size, args.intermediate_size))

    def __call__(self, x: mx.array, mask: Any, cache: Any) -> mx.array:
        h = x + self.self_attn(self.input_layernorm(x), mask, cache)
        return h + self.mlp(self.post_attention_layernorm(h))


class MTPHead(nn.Module):
    """The head's own weights only (norms, fc, layers); embedding and output head stay
    the target's."""

    def __init__(self, args: Any, num_layers: int, moe: bool):
        super().__init__()
        size, eps = args.hidden_size, args.rms_norm_eps
        self.pre_fc_norm_embedding = nn.RMSNorm(size, eps=eps)
        self.pre_fc_norm_hidden = nn.RMSNorm(size, eps=eps)
        self.fc = nn.Linear(2 * size, size, bias=False)
        self.layers = [MTPDecoderLayer(args, moe) for _ in range(num_layers)]
        self.norm = nn.RMSNorm(size, eps=eps)

    def __call__(self, hidden: mx.array, embeds: mx.array, cache: Any,
                 layer: int = 0) -> mx.array:
        """(B, L, hidden) target (or previous draft) hidden states and (B, L, hidden)
        embeddings of the tokens that follow them → (B, L, hidden) normed output."""
        x = self.fc(mx.concatenate([self.pre_fc_norm_embedding(embeds),
                                    self.pre_fc_norm_hidden(hidden)], axis=-1))
        x = self.layers[layer](x, create_attention_mask(x, cache), cache)
        return self.norm(x)


@dataclass
class MTPAdapter:
    """An MTP head wired to its target: ``step`` gives draft logits and hidden states."""

    head: MTPHead
    embed_tokens: Any  # the target's embedding module (shared, not copied)
    lm_head: Any  # the target's output head: a Linear, or the tied embedding's as_linear

    @property
    def num_layers(self) -> int:
        return len(self.head.layers)

    def make_cache(self) -> list:
        """One single-stream cache per head layer (the head's own KV)."""
        return [KVCache() for _ in self.head.layers]

    def step(self, hidden: mx.array, tokens: mx.array, caches: list,
             layer: int = 0) -> tuple[mx.array, mx.array]:
        """(logits (B, L, V), hidden (B, L, hidden)) for the next token after each of
        ``tokens`` (B, L), given the hidden states that produced them; ``caches``: one
        per head layer (``make_cache``), ``layer`` picks the one that runs."""
        out = self.head(hidden, self.embed_tokens(tokens), caches[layer], layer)
        return self.lm_head(out), out


def load_mtp_adapter(loaded: Any) -> MTPAdapter:
    """The MTP head of a loaded target (models.loaded.LoadedModel), from the ``mtp.*``
    weights in its checkpoint folder; ModelLoadError when there are none or they do not
    fit the target."""
    model_type = str(loaded.config.get("model_type", ""))
    if model_type not in MTP_MODEL_TYPES:
        raise ModelLoadError(f"{loaded.name}: MTP heads are supported for model types "
                             f"{', '.join(MTP_MODEL_TYPES)}, not {model_type or 'unknown'!r}")
    raw = read_mtp_weights(loaded.path)
    if not raw:
        raise ModelLoadError(f"{loaded.name} has no mtp.* weights in its checkpoint (MLX "
                             "conversions drop them; serve the original checkpoint)")
    args = _text_args(loaded.model)
    weights = head_weights(raw, zero_centred=_zero_centred(loaded.path),
                           quantization=_text_config(loaded.config).get("quantization")
                           or loaded.config.get("quantization"))
    head = MTPHead(args, _layer_count(weights), moe=_has_moe(weights))
    _load_into(head, weights, loaded.name, _target_dtype(loaded.model))
    trunk = text_trunk(loaded.model)
    return MTPAdapter(head, trunk.embed_tokens, output_head(loaded.model))


# ---- reading the checkpoint ------------------------------------------------------------
def _weight_files(folder: str) -> dict[str, list[str]]:
    """safetensors file → the tensor names it holds (from the index when there is one)."""
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.isfile(index):
        with open(index, encoding="utf-8") as f:
            weight_map = json.load(f).get("weight_map", {})
        files: dict[str, list[str]] = {}
        for name, file in weight_map.items():
            files.setdefault(os.path.join(folder, file), []).append(name)
        return files
    return {path: [] for path in sorted(glob.glob(os.path.join(folder, "*.safetensors")))}


def read_mtp_weights(folder: str) -> dict[str, mx.array]:
    """Every ``mtp.*`` tensor of the checkpoint (lazily loaded, so other tensors of the same
    files are never read)."""
    found: dict[str, mx.array] = {}
    for path, names in _weight_files(folder).items():
        if names and not any(n.startswith(PREFIX) for n in names):
            continue
        found.update({k: v for k, v in mx.load(path).items() if k.startswith(PREFIX)})
    return found


def _zero_centred(folder: str) -> bool:
    """Whether the checkpoint is in Hugging Face form (norms stored as ``w - 1``): its
    gated-delta conv1d weights are (C, 1, K), not MLX's (C, K, 1) (mlx-lm's own rule)."""
    for path, names in _weight_files(folder).items():
        if names and not any("conv1d.weight" in n for n in names):
            continue
        for name, value in mx.load(path).items():
            if "conv1d.weight" in name:
                return value.shape[-1] != 1
    return False


def head_weights(raw: dict[str, mx.array], zero_centred: bool,
                 quantization: dict | None = None) -> dict[str, mx.array]:
    """Checkpoint ``mtp.*`` tensors → ``MTPHead`` parameter names (experts stacked for
    mlx-lm's SwitchGLU, norms un-centred, quantized weights dequantized)."""
    weights = {k[len(PREFIX):]: v for k, v in raw.items()}
    weights = _dequantized(weights, quantization or {})
    weights = _stacked_experts(weights)
    if zero_centred:
        weights = {k: v + 1.0 if is_norm(k, v) else v for k, v in weights.items()}
    return weights


def is_norm(name: str, value: mx.array) -> bool:
    """An RMS norm's scale (``norm``, ``pre_fc_norm_hidden``, ``q_norm`` ...)."""
    module = name.rsplit(".", 2)[-2] if name.count(".") else ""
    return value.ndim == 1 and name.endswith(".weight") and "norm" in module


def _dequantized(weights: dict[str, mx.array], quantization: dict) -> dict[str, mx.array]:
    out = dict(weights)
    for name in [k for k in weights if k.endswith(".scales")]:
        base = name[:-len(".scales")]
        out[f"{base}.weight"] = mx.dequantize(
            out[f"{base}.weight"], out.pop(name), out.pop(f"{base}.biases", None),
            group_size=int(quantization.get("group_size", 64)),
            bits=int(quantization.get("bits", 4)))
    return out


def _stacked_experts(weights: dict[str, mx.array]) -> dict[str, mx.array]:
    out: dict[str, mx.array] = {}
    per_expert: dict[tuple[str, str], dict[int, mx.array]] = {}
    for name, value in weights.items():
        head, sep, rest = name.partition(".mlp.experts.")
        if not sep:
            out[name] = value
        elif rest == "gate_up_proj":  # Qwen3.5-MoE: (E, 2I, hidden), gate rows first
            gate, up = mx.split(value, 2, axis=-2)
            out[f"{head}.mlp.switch_mlp.gate_proj.weight"] = gate
            out[f"{head}.mlp.switch_mlp.up_proj.weight"] = up
        elif rest == "down_proj":
            out[f"{head}.mlp.switch_mlp.down_proj.weight"] = value
        else:  # Qwen3-Next: experts.{e}.{part}.weight
            expert, _, part = rest.partition(".")
            per_expert.setdefault((head, part.removesuffix(".weight")), {})[int(expert)] = value
    for (head, part), experts in per_expert.items():
        out[f"{head}.mlp.switch_mlp.{part}.weight"] = mx.stack(
            [experts[e] for e in sorted(experts)])
    return out


# ---- building the head -----------------------------------------------------------------
def _text_config(config: dict) -> dict:
    return config.get("text_config") or {}


def _text_args(model: Any) -> Any:
    """The target's text-model arguments (mlx-lm keeps them on the text model)."""
    text = getattr(model, "language_model", model)
    return text.args


def _layer_count(weights: dict[str, mx.array]) -> int:
    indexes = {int(k.split(".")[1]) for k in weights if k.startswith("layers.")}
    if not indexes or indexes != set(range(len(indexes))):
        raise ModelLoadError(f"the checkpoint's mtp layers are {sorted(indexes)}: expected "
                             "layers 0..n-1")
    return len(indexes)


def _has_moe(weights: dict[str, mx.array]) -> bool:
    return any(".mlp.switch_mlp." in k for k in weights)


def _target_dtype(model: Any) -> mx.Dtype:
    return text_trunk(model).norm.weight.dtype


def _load_into(head: MTPHead, weights: dict[str, mx.array], name: str,
               dtype: mx.Dtype) -> None:
    cast = [(k, v.astype(dtype) if mx.issubdtype(v.dtype, mx.floating) else v)
            for k, v in weights.items()]
    try:
        head.load_weights(cast, strict=True)
    except ValueError as e:
        raise ModelLoadError(f"{name}: the checkpoint's mtp.* weights do not fit its "
                             f"text model: {str(e).splitlines()[0]}") from None
    mx.eval(head.parameters())
