"""Loading local Hugging Face folders (tiny random models) through load_model."""

from __future__ import annotations

import json
import os

import mlx.core as mx
import mlx.nn as nn
import pytest
from mlx.utils import tree_flatten
from tiny_models import make_tiny_model

from mlxserve.config import ModelConfig
from mlxserve.errors import ModelLoadError
from mlxserve.models import load_model

PROMPT = mx.array([[5, 17, 99, 3, 42, 7]])


def _float_dtypes(model) -> set:
    return {v.dtype for _, v in tree_flatten(model.parameters()) if mx.issubdtype(v.dtype, mx.floating)}


@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3", "gemma3"])
def test_family_loads_as_mlx_lm_model(tmp_path, family):
    folder = make_tiny_model(tmp_path, family)
    loaded = load_model(ModelConfig(model=folder))
    config = json.load(open(os.path.join(folder, "config.json")))
    assert type(loaded.model).__module__ == f"mlx_lm.models.{config['model_type']}"
    assert type(loaded.tokenizer).__name__ == "TokenizerWrapper"
    logits = loaded.model(PROMPT)
    assert logits.shape == (1, PROMPT.shape[1], config["vocab_size"])
    assert _float_dtypes(loaded.model) == {mx.float32}
    caps = loaded.capabilities
    assert caps.model_type == config["model_type"]
    assert caps.context_length == config["max_position_embeddings"]
    assert caps.vocab_size == config["vocab_size"]
    assert caps.dtype == "float32" and caps.quantization == "none"
    assert caps.has_sliding_window == (family == "gemma3")
    assert caps.cache_trimmable
    assert caps.has_chat_template and not caps.template_has_tools
    assert loaded.name == os.path.basename(folder) and loaded.path == folder


def test_eos_ids_join_config_generation_config_and_tokenizer(tmp_path):
    folder = make_tiny_model(tmp_path, "llama")
    with open(os.path.join(folder, "generation_config.json"), "w") as f:
        json.dump({"eos_token_id": [7]}, f)
    loaded = load_model(ModelConfig(model=folder))
    im_end = loaded.tokenizer.convert_tokens_to_ids("<|im_end|>")
    endoftext = loaded.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert loaded.eos_token_ids == {7, im_end, endoftext}


def test_hybrid_cache_is_not_trimmable(tmp_path):
    loaded = load_model(ModelConfig(model=make_tiny_model(tmp_path, "qwen3_next")))
    assert not loaded.capabilities.cache_trimmable


def test_bf16_checkpoint_computes_in_float32_on_cpu(tmp_path):
    folder = make_tiny_model(tmp_path, "qwen3")
    path = os.path.join(folder, "model.safetensors")
    weights = {k: v.astype(mx.bfloat16) for k, v in mx.load(path).items()}
    mx.save_safetensors(path, weights)
    loaded = load_model(ModelConfig(model=folder))
    assert _float_dtypes(loaded.model) == {mx.float32}
    half = load_model(ModelConfig(model=folder, dtype="float16"))
    assert _float_dtypes(half.model) == {mx.float16} and half.capabilities.dtype == "float16"


def _quantized_copy(tmp_path, folder: str) -> str:
    from mlx_lm.utils import load as mlx_lm_load
    from mlx_lm.utils import quantize_model, save

    model, tokenizer, config = mlx_lm_load(folder, return_config=True)
    model, config = quantize_model(model, config, group_size=32, bits=4)
    out = str(tmp_path / "quantized")
    save(out, folder, model, tokenizer, config)
    return out


def test_mlx_quantized_folder_is_dequantized_on_cpu(tmp_path):
    quantized = _quantized_copy(tmp_path, make_tiny_model(tmp_path, "llama"))
    kept = load_model(ModelConfig(model=quantized, keep_quantized=True))
    assert any(isinstance(m, nn.QuantizedLinear) for _, m in kept.model.named_modules())
    assert kept.capabilities.quantization == "affine-4bit"
    dense = load_model(ModelConfig(model=quantized))
    assert not any(isinstance(m, (nn.QuantizedLinear, nn.QuantizedEmbedding))
                   for _, m in dense.model.named_modules())
    assert _float_dtypes(dense.model) == {mx.float32}
    assert dense.capabilities.quantization == "none"
    # Same weights, so the same function: dequantizing is exact up to float rounding.
    difference = mx.abs(kept.model(PROMPT).astype(mx.float32) - dense.model(PROMPT)).max().item()
    assert difference < 1e-2


TEMPLATE_WITH_TOOLS_AND_THINKING = (
    "{% if tools %}<tools>{% for t in tools %}{{ t.function.name }}{% endfor %}</tools>{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is not defined or enable_thinking %}<think>\n{% endif %}{% endif %}"
)


def test_template_probe_reads_tools_and_thinking(tmp_path):
    folder = make_tiny_model(tmp_path, "qwen3")
    template_file = tmp_path / "template.jinja"
    template_file.write_text(TEMPLATE_WITH_TOOLS_AND_THINKING)
    caps = load_model(ModelConfig(model=folder, chat_template=str(template_file))).capabilities
    assert caps.template_has_tools and caps.template_has_thinking and caps.template_opens_thinking
    plain = load_model(ModelConfig(model=folder)).capabilities
    assert plain.has_chat_template and not plain.template_has_thinking
    # the tiny models' own ChatML template: no tools, no thinking
    assert not (plain.template_has_tools or plain.template_opens_thinking)


def test_mtp_heads_detected_from_config(tmp_path):
    folder = make_tiny_model(tmp_path, "llama")
    config_path = os.path.join(folder, "config.json")
    config = json.load(open(config_path))
    assert not load_model(ModelConfig(model=folder)).capabilities.has_mtp
    config["num_nextn_predict_layers"] = 1
    json.dump(config, open(config_path, "w"))
    assert load_model(ModelConfig(model=folder)).capabilities.has_mtp


def test_mtp_heads_detected_from_weight_names(tmp_path):
    from mlxserve.models.probe import has_mtp_heads

    mx.save_safetensors(str(tmp_path / "model.safetensors"), {"model.mtp.0.norm.weight": mx.ones((4,))})
    assert has_mtp_heads({}, str(tmp_path))
    mx.save_safetensors(str(tmp_path / "model.safetensors"), {"model.norm.weight": mx.ones((4,))})
    assert not has_mtp_heads({}, str(tmp_path))


def test_folder_without_weights_is_a_clear_error(tmp_path):
    folder = make_tiny_model(tmp_path, "llama")
    os.remove(os.path.join(folder, "model.safetensors"))
    with pytest.raises(ModelLoadError, match="no \\*.safetensors weights"):
        load_model(ModelConfig(model=folder))


def test_unknown_architecture_is_a_clear_error(tmp_path):
    folder = make_tiny_model(tmp_path, "llama")
    config_path = os.path.join(folder, "config.json")
    config = json.load(open(config_path))
    config["model_type"] = "no_such_family"
    json.dump(config, open(config_path, "w"))
    with pytest.raises(ModelLoadError, match="no_such_family"):
        load_model(ModelConfig(model=folder))


def test_bad_dtype_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="dtype 'int8' is not supported"):
        load_model(ModelConfig(model=make_tiny_model(tmp_path, "llama"), dtype="int8"))
