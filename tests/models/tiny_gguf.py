"""Write a tiny HF test model as a GGUF the way llama.cpp's converter lays one out.

Follows llama.cpp's conventions independently of mlxserve's reader: tensor names, the
rope permutation of q/k rows for the llama architecture, Gemma norms stored as 1 + w,
ggml's reversed shapes, and the tokenizer as tokens + merges metadata. Also writes the
*reference* HF folder: the same model with every quantized weight replaced by its
dequantized value, so a correct GGUF loader must reproduce its logits.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

_ARCH = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "gemma3_text": "gemma3"}
_LAYER = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "self_attn.q_norm": "attn_q_norm",
    "self_attn.k_norm": "attn_k_norm", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
}  # fmt: skip
_GEMMA_LAYER = {
    **_LAYER, "post_attention_layernorm": "post_attention_norm",
    "pre_feedforward_layernorm": "ffn_norm", "post_feedforward_layernorm": "post_ffw_norm",
}  # fmt: skip
_TOP = {"model.embed_tokens": "token_embd", "model.norm": "output_norm", "lm_head": "output"}


def llama_cpp_permute(weight: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf permutation of q/k rows (for its rope layout)."""
    return (
        weight.reshape(n_head, 2, weight.shape[0] // n_head // 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def llama3_rope_factors(config: dict) -> np.ndarray:
    """llama.cpp's rope_freqs table for Llama 3 rope scaling, written loop by loop."""
    import math

    scaling, dim = config["rope_scaling"], config.get("head_dim") or (
        config["hidden_size"] // config["num_attention_heads"]
    )
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    old = scaling["original_max_position_embeddings"]
    factors = []
    for i in range(0, dim, 2):
        wavelength = 2 * math.pi * config["rope_theta"] ** (i / dim)
        if wavelength < old / high:
            factors.append(1.0)
        elif wavelength > old / low:
            factors.append(factor)
        else:
            smooth = (old / wavelength - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(factors, dtype=np.float32)


def gguf_name(hf_name: str, arch: str) -> str:
    stem, kind = hf_name.rsplit(".", 1)
    if stem in _TOP:
        return f"{_TOP[stem]}.{kind}"
    _, _, layer, rest = stem.split(".", 3)
    table = _GEMMA_LAYER if arch == "gemma3" else _LAYER
    return f"blk.{layer}.{table[rest]}.{kind}"


def _tokenizer_metadata(writer, folder: Path, pre: str) -> None:
    tok = json.loads((folder / "tokenizer.json").read_text())
    vocab = dict(tok["model"]["vocab"])
    specials = {a["content"]: a["id"] for a in tok["added_tokens"]}
    tokens = [None] * (max(list(vocab.values()) + list(specials.values())) + 1)
    for text, index in {**vocab, **specials}.items():
        tokens[index] = text
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
    types = [3 if t in specials else 1 for t in tokens]
    config = json.loads((folder / "tokenizer_config.json").read_text())
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_eos_token_id(specials["<|im_end|>"])
    writer.add_pad_token_id(specials["<|endoftext|>"])
    writer.add_add_bos_token(False)
    writer.add_chat_template(config["chat_template"])


def _hparams(writer, config: dict, arch: str) -> None:
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(config["num_attention_heads"])
    writer.add_head_count_kv(config["num_key_value_heads"])
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_rope_freq_base(config["rope_theta"])
    if "head_dim" in config:
        writer.add_key_length(config["head_dim"])
        writer.add_value_length(config["head_dim"])
    if arch == "gemma3":
        writer.add_sliding_window(config["sliding_window"])
        writer.add_sliding_window_pattern(config["sliding_window_pattern"])


def _llama_cpp_tensor(name: str, value: np.ndarray, config: dict, arch: str) -> np.ndarray:
    if arch == "llama" and name.endswith("q_proj.weight"):
        return llama_cpp_permute(value, config["num_attention_heads"])
    if arch == "llama" and name.endswith("k_proj.weight"):
        return llama_cpp_permute(value, config["num_key_value_heads"])
    if arch == "gemma3" and name.endswith("norm.weight"):
        return value + 1.0
    return value


def write_tiny_gguf(
    hf_folder: str, out_dir, qtype: str = "Q8_0", pre: str = "qwen2", split_max_tensors: int = 0
):
    """Write ``out_dir/model.gguf`` and ``out_dir/reference`` (HF folder); return both.
    With ``split_max_tensors``, write a llama.cpp split and return its first file."""
    import gguf
    import mlx.core as mx
    from gguf import quants

    folder, out_dir = Path(hf_folder), Path(out_dir)
    config = json.loads((folder / "config.json").read_text())
    arch = _ARCH[config["model_type"]]
    weights = {k: np.array(v.astype(mx.float32)) for k, v in mx.load(str(folder / "model.safetensors")).items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "model.gguf"
    writer = gguf.GGUFWriter(str(path), arch, split_max_tensors=split_max_tensors)
    _hparams(writer, config, arch)
    _tokenizer_metadata(writer, folder, pre)
    quant_type = gguf.GGMLQuantizationType[qtype]
    reference = {}
    for name, value in weights.items():
        if value.ndim == 2:
            packed = quants.quantize(_llama_cpp_tensor(name, value, config, arch), quant_type)
            writer.add_tensor(gguf_name(name, arch), packed, raw_dtype=quant_type)
            reference[name] = quants.dequantize(quants.quantize(value, quant_type), quant_type)
        else:
            writer.add_tensor(gguf_name(name, arch), _llama_cpp_tensor(name, value, config, arch))
            reference[name] = value
    if (config.get("rope_scaling") or {}).get("rope_type") == "llama3":
        writer.add_tensor("rope_freqs.weight", llama3_rope_factors(config))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    if split_max_tensors:
        path = sorted(out_dir.glob("model-00001-of-*.gguf"))[0]
    ref = out_dir / "reference"
    shutil.copytree(folder, ref)
    mx.save_safetensors(str(ref / "model.safetensors"), {k: mx.array(v) for k, v in reference.items()})
    return str(path), str(ref)
