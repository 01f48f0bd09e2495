"""GGUF → MLX on tiny models written the way llama.cpp writes them (see tiny_gguf.py).

The reference is the same HF model with each quantized weight replaced by its dequantized
value, loaded by the same code path: a correct name mapping, q/k un-permutation, norm
offset and config must reproduce its logits exactly.
"""

from __future__ import annotations

import glob
import json
import os

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from tiny_gguf import write_tiny_gguf
from tiny_models import make_tiny_model

from mlxserve.config import ModelConfig
from mlxserve.models import load_model

PROMPT = mx.array([[5, 17, 99, 3, 42, 7, 100, 200, 31]])
TEXTS = ["the cat sat", "  leading spaces\n\tand tabs", "<|im_start|>user\nhi<|im_end|>", "ünïcødé 漢字 🙂"]


def _tiny_gguf(tmp_path, family: str, qtype: str = "Q8_0"):
    folder = make_tiny_model(tmp_path / "hf", family)
    return write_tiny_gguf(folder, tmp_path / f"gguf-{family}-{qtype}", qtype)


def _max_difference(a, b) -> float:
    return mx.abs(a.model(PROMPT) - b.model(PROMPT)).max().item()


@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3", "gemma3"])
def test_gguf_logits_equal_dequantized_reference(tmp_path, family):
    gguf_path, reference = _tiny_gguf(tmp_path, family)
    loaded = load_model(ModelConfig(model=gguf_path))
    expected = load_model(ModelConfig(model=reference))
    assert _max_difference(loaded, expected) < 1e-4
    assert loaded.capabilities.has_sliding_window == (family == "gemma3")
    assert loaded.capabilities.context_length == expected.capabilities.context_length
    assert loaded.capabilities.has_chat_template
    assert loaded.name == "model"
    for text in TEXTS:
        assert loaded.tokenizer.encode(text) == expected.tokenizer.encode(text)
    assert loaded.eos_token_ids == expected.eos_token_ids  # <|im_end|> and <|endoftext|>


@pytest.mark.parametrize("qtype", ["Q5_0", "F16", "BF16"])
def test_other_types_are_decoded_exactly(tmp_path, qtype):
    gguf_path, reference = _tiny_gguf(tmp_path, "llama", qtype)
    loaded = load_model(ModelConfig(model=gguf_path))
    assert _max_difference(loaded, load_model(ModelConfig(model=reference))) < 1e-4


def test_keep_quantized_native_q8_0_stays_packed_and_exact(tmp_path):
    gguf_path, reference = _tiny_gguf(tmp_path, "llama", "Q8_0")
    kept = load_model(ModelConfig(model=gguf_path, keep_quantized=True))
    assert any(isinstance(m, nn.QuantizedLinear) for _, m in kept.model.named_modules())
    assert kept.capabilities.quantization == "gguf-q8_0->affine-8bit"
    assert _max_difference(kept, load_model(ModelConfig(model=reference))) < 1e-3


def test_keep_quantized_requantizes_within_8bit_error(tmp_path):
    gguf_path, reference = _tiny_gguf(tmp_path, "qwen2", "Q5_0")
    kept = load_model(ModelConfig(model=gguf_path, keep_quantized=True))
    layer = kept.model.model.layers[0].mlp.up_proj
    assert isinstance(layer, nn.QuantizedLinear) and layer.bits == 8
    restored = mx.dequantize(layer.weight, layer.scales, layer.biases, layer.group_size, layer.bits)
    expected = mx.load(os.path.join(reference, "model.safetensors"))["model.layers.0.mlp.up_proj.weight"]
    group_range = np.ptp(np.array(expected).reshape(-1, 32), axis=1).max()
    assert mx.abs(restored - expected).max().item() <= group_range / 255 + 1e-6


def test_conversion_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("MLXSERVE_CACHE", str(tmp_path / "cache"))
    gguf_path, _ = _tiny_gguf(tmp_path, "qwen3")
    first = load_model(ModelConfig(model=gguf_path))
    weights = os.path.join(first.path, "model.safetensors")
    stamp = os.stat(weights).st_mtime_ns
    second = load_model(ModelConfig(model=gguf_path))
    assert second.path == first.path and os.stat(weights).st_mtime_ns == stamp
    assert first.path.startswith(str(tmp_path / "cache" / "converted"))
    saved = json.load(open(os.path.join(first.path, "config.json")))
    assert saved["model_type"] == "qwen3" and os.path.isfile(os.path.join(first.path, "tokenizer.json"))


def test_byte_split_parts_are_joined(tmp_path, monkeypatch):
    monkeypatch.setenv("MLXSERVE_CACHE", str(tmp_path / "cache"))
    gguf_path, reference = _tiny_gguf(tmp_path, "llama")
    data = open(gguf_path, "rb").read()
    cuts = [0, len(data) // 3, 2 * len(data) // 3, len(data)]
    for i in range(3):
        (tmp_path / f"part{i + 1:02d}.bin").write_bytes(data[cuts[i] : cuts[i + 1]])
    loaded = load_model(ModelConfig(model=str(tmp_path / "part*.bin")))
    assert _max_difference(loaded, load_model(ModelConfig(model=reference))) < 1e-4
    leftovers = glob.glob(str(tmp_path / "cache" / "**" / "*.gguf"), recursive=True)
    assert leftovers == []  # the joined copy is only kept while converting


def test_llama_cpp_split_files_are_read_together(tmp_path):
    folder = make_tiny_model(tmp_path / "hf", "qwen2")
    first, reference = write_tiny_gguf(folder, tmp_path / "split", "Q8_0", split_max_tensors=10)
    assert os.path.basename(first).startswith("model-00001-of-")
    loaded = load_model(ModelConfig(model=first))
    assert loaded.name == "model"
    assert _max_difference(loaded, load_model(ModelConfig(model=reference))) < 1e-4


def test_llama3_rope_scaling_recovered_from_rope_freqs(tmp_path):
    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}  # fmt: skip
    folder = make_tiny_model(tmp_path / "hf", "llama", overrides={"head_dim": 16, "rope_theta": 500000.0,
                                                                  "rope_scaling": scaling})  # fmt: skip
    gguf_path, reference = write_tiny_gguf(folder, tmp_path / "gguf")
    loaded = load_model(ModelConfig(model=gguf_path))
    assert loaded.config["rope_scaling"]["factor"] == 8.0
    long_prompt = mx.array([list(range(1, 250))])
    expected = load_model(ModelConfig(model=reference))
    assert mx.abs(loaded.model(long_prompt) - expected.model(long_prompt)).max().item() < 1e-3
