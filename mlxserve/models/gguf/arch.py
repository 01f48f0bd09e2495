"""Per-architecture knowledge: GGUF metadata → config.json, GGUF tensor names → mlx-lm
names, and the transforms llama.cpp's converter applied that must be undone.

Supported: llama, qwen2, qwen3, gemma3 (text). Pure Python + numpy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from mlxserve.errors import ModelLoadError
from mlxserve.models.gguf.reader import GGUFFile

_LAYER_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
# Gemma 3 has four norms per block; llama.cpp names them differently.
_GEMMA3_LAYER_NAMES = {
    **_LAYER_NAMES,
    "post_attention_norm": "post_attention_layernorm",
    "ffn_norm": "pre_feedforward_layernorm",
    "post_ffw_norm": "post_feedforward_layernorm",
}
_GLOBAL_NAMES = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
}
_BLOCK = re.compile(r"^blk\.(\d+)\.(\w+)\.(weight|bias)$")
_GLOBAL = re.compile(r"^(\w+)\.(weight|bias)$")
# Tensors llama.cpp stores that mlx-lm derives itself.
_SKIPPED = {"rope_freqs.weight"}


@dataclass(frozen=True)
class ArchSpec:
    model_type: str
    layer_names: dict
    permute_qk: bool = False  # llama.cpp permuted q/k rows for its rope (llama arch)
    norm_offset: float = 0.0  # subtract from *norm.weight (gemma: llama.cpp stored 1 + w)


ARCHS = {
    "llama": ArchSpec("llama", _LAYER_NAMES, permute_qk=True),
    "qwen2": ArchSpec("qwen2", _LAYER_NAMES),
    "qwen3": ArchSpec("qwen3", _LAYER_NAMES),
    "gemma3": ArchSpec("gemma3_text", _GEMMA3_LAYER_NAMES, norm_offset=1.0),
}


def arch_spec(file: GGUFFile) -> ArchSpec:
    arch = file.architecture
    if arch not in ARCHS:
        raise ModelLoadError(
            f"GGUF architecture '{arch}' is not supported; supported: {', '.join(sorted(ARCHS))}"
        )
    if arch == "gemma3" and any(t.name.startswith(("v.", "mm.")) for t in file.tensors):
        raise ModelLoadError("GGUF gemma3 files with a vision tower are not supported; use the text model")
    return ARCHS[arch]


def hf_tensor_name(spec: ArchSpec, gguf_name: str) -> str | None:
    """The mlx-lm parameter name for a GGUF tensor; None for tensors that are not needed."""
    if gguf_name in _SKIPPED:
        return None
    block = _BLOCK.match(gguf_name)
    if block:
        layer, part, kind = block.groups()
        if part not in spec.layer_names:
            raise ModelLoadError(f"GGUF tensor '{gguf_name}' is not known for {spec.model_type}")
        return f"model.layers.{layer}.{spec.layer_names[part]}.{kind}"
    top = _GLOBAL.match(gguf_name)
    if top and top.group(1) in _GLOBAL_NAMES:
        return f"{_GLOBAL_NAMES[top.group(1)]}.{top.group(2)}"
    raise ModelLoadError(f"GGUF tensor '{gguf_name}' is not known for {spec.model_type}")


def _unpermute(weight: np.ndarray, n_heads: int) -> np.ndarray:
    """Inverse of llama.cpp's rope permutation of q/k rows (halves → interleaved pairs)."""
    rows = weight.shape[0]
    shaped = weight.reshape(n_heads, rows // n_heads // 2, 2, *weight.shape[1:])
    return shaped.swapaxes(1, 2).reshape(weight.shape)


def fix_tensor(spec: ArchSpec, config: dict, hf_name: str, value: np.ndarray) -> np.ndarray:
    """Undo what llama.cpp's converter did to this tensor (a float array)."""
    if spec.permute_qk and hf_name.endswith(("q_proj.weight", "q_proj.bias")):
        return _unpermute(value, config["num_attention_heads"])
    if spec.permute_qk and hf_name.endswith(("k_proj.weight", "k_proj.bias")):
        return _unpermute(value, config["num_key_value_heads"])
    if spec.norm_offset and hf_name.endswith("norm.weight"):
        return value - np.float32(spec.norm_offset)
    return value


def needs_float_fix(spec: ArchSpec, hf_name: str) -> bool:
    """True when fix_tensor would change this tensor (so it must be dequantized first)."""
    if spec.permute_qk and ("q_proj." in hf_name or "k_proj." in hf_name):
        return True
    return bool(spec.norm_offset) and hf_name.endswith("norm.weight")


def _required(file: GGUFFile, key: str):
    value = file.arch_value(key)
    if value is None:
        raise ModelLoadError(f"GGUF metadata lacks '{file.architecture}.{key}'")
    return value


def _vocab_size(file: GGUFFile) -> int:
    tokens = file.metadata.get("tokenizer.ggml.tokens")
    if tokens:
        return len(tokens)
    return int(_required(file, "vocab_size"))


# Control tokens that end a turn, as llama.cpp recognizes them by text (its EOG set).
_END_OF_TURN_TEXTS = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>",
    "<EOT>", "<|end_of_text|>", "<｜end▁of▁sentence｜>", "<|return|>", "<|call|>",
}  # fmt: skip
_CONTROL = 3


def _eos_ids(file: GGUFFile) -> list[int]:
    """The file's eos/eot/eom ids, plus control tokens whose text ends a turn."""
    keys = ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id")
    ids = [int(file.metadata[k]) for k in keys if file.metadata.get(k) is not None]
    tokens = file.metadata.get("tokenizer.ggml.tokens") or []
    types = file.metadata.get("tokenizer.ggml.token_type") or []
    ids += [i for i, (t, k) in enumerate(zip(tokens, types)) if k == _CONTROL and t in _END_OF_TURN_TEXTS]
    return list(dict.fromkeys(ids))


def build_config(file: GGUFFile, spec: ArchSpec) -> dict:
    """An HF-style config.json for mlx-lm from the GGUF's metadata."""
    heads = int(_required(file, "attention.head_count"))
    hidden = int(_required(file, "embedding_length"))
    names = {t.name for t in file.tensors}
    config = {
        "model_type": spec.model_type,
        "architectures": [],
        "hidden_size": hidden,
        "num_hidden_layers": int(_required(file, "block_count")),
        "intermediate_size": int(_required(file, "feed_forward_length")),
        "num_attention_heads": heads,
        "num_key_value_heads": int(file.arch_value("attention.head_count_kv", heads)),
        "head_dim": int(file.arch_value("attention.key_length", hidden // heads)),
        "rms_norm_eps": float(_required(file, "attention.layer_norm_rms_epsilon")),
        "rope_theta": float(file.arch_value("rope.freq_base", 10000.0)),
        "max_position_embeddings": int(file.arch_value("context_length", 4096)),
        "vocab_size": _vocab_size(file),
        "tie_word_embeddings": "output.weight" not in names,
        "eos_token_id": _eos_ids(file),
        "bos_token_id": file.metadata.get("tokenizer.ggml.bos_token_id"),
    }
    _add_rope_scaling(file, config)
    if spec.model_type == "gemma3_text":
        _add_gemma3(file, config)
    if spec.model_type == "llama":
        config["attention_bias"] = "blk.0.attn_q.bias" in names
        config["mlp_bias"] = "blk.0.ffn_up.bias" in names
    return config


def _llama3_factors(params: dict, theta: float, head_dim: int) -> np.ndarray:
    """The per-frequency divisors Llama 3 rope scaling applies (as llama.cpp tabulates them)."""
    factor, low, high = params["factor"], params["low_freq_factor"], params["high_freq_factor"]
    old = params["original_max_position_embeddings"]
    wavelengths = 2 * np.pi * theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    smooth = np.clip((old / wavelengths - low) / (high - low), 0.0, 1.0)
    return 1.0 / ((1 - smooth) / factor + smooth)


def _llama3_rope_scaling(file: GGUFFile, config: dict) -> dict:
    """Recover rope_scaling from llama.cpp's rope_freqs table: the factor is its largest
    entry; the other parameters are Llama 3's, checked against the whole table."""
    tensor = next(t for t in file.tensors if t.name == "rope_freqs.weight")
    table = np.asarray(tensor.data, dtype=np.float64).reshape(-1)
    original = int(file.arch_value("rope.scaling.original_context_length", 8192))
    params = {
        "rope_type": "llama3",
        "factor": float(table.max()),
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": original,
    }
    expected = _llama3_factors(params, config["rope_theta"], config["head_dim"])
    if expected.shape != table.shape or not np.allclose(expected, table, rtol=1e-3):
        raise ModelLoadError("GGUF rope_freqs table does not match Llama 3 rope scaling; not supported")
    return params


def _add_rope_scaling(file: GGUFFile, config: dict) -> None:
    kind = file.arch_value("rope.scaling.type")
    factor = file.arch_value("rope.scaling.factor")
    if any(t.name == "rope_freqs.weight" for t in file.tensors):
        config["rope_scaling"] = _llama3_rope_scaling(file, config)
        return
    if kind in (None, "none") or not factor:
        return
    if kind != "linear" and kind != "yarn":
        raise ModelLoadError(f"GGUF rope scaling '{kind}' is not supported (linear, yarn)")
    config["rope_scaling"] = {"type": kind, "rope_type": kind, "factor": float(factor)}
    original = file.arch_value("rope.scaling.original_context_length")
    if original:
        config["rope_scaling"]["original_max_position_embeddings"] = int(original)


def _sliding_pattern(value) -> int:
    """llama.cpp writes an int period, or one bool per layer (True: sliding)."""
    if isinstance(value, list):
        return value.index(False) + 1 if False in value else len(value) + 1
    return int(value)


def _add_gemma3(file: GGUFFile, config: dict) -> None:
    config["sliding_window"] = int(file.arch_value("attention.sliding_window", 512))
    config["sliding_window_pattern"] = _sliding_pattern(
        file.arch_value("attention.sliding_window_pattern", 6)
    )
    # llama.cpp scales queries by head_dim, except Gemma 3 27B (62 layers): hidden / heads.
    scalar = config["head_dim"]
    if config["num_hidden_layers"] == 62:
        scalar = config["hidden_size"] // config["num_attention_heads"]
    config["query_pre_attn_scalar"] = int(scalar)
    config["rope_local_base_freq"] = float(file.arch_value("rope.freq_base_swa", 10000.0))
