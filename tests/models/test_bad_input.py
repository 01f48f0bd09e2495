"""Bad model input: one clear ModelLoadError line naming the problem, never a deep traceback."""

from __future__ import annotations

import numpy as np
import pytest
from tiny_gguf import write_tiny_gguf
from tiny_models import make_tiny_model

from mlxserve.config import ModelConfig
from mlxserve.errors import ModelLoadError
from mlxserve.models import load_model


def _load_error(spec: str, **options) -> str:
    with pytest.raises(ModelLoadError) as info:
        load_model(ModelConfig(model=spec, **options))
    message = info.value.message
    assert "\n" not in message and "Traceback" not in message
    return message


@pytest.fixture
def tiny_gguf(tmp_path):
    folder = make_tiny_model(tmp_path / "hf", "llama")
    path, _ = write_tiny_gguf(folder, tmp_path / "gguf")
    return path


def test_missing_path(tmp_path):
    assert "not found" in _load_error(str(tmp_path / "nope.gguf"))


def test_not_a_gguf(tmp_path):
    path = tmp_path / "fake.gguf"
    path.write_text("this is not a model")
    assert "is not a GGUF file" in _load_error(str(path))


@pytest.mark.parametrize("keep_fraction", [0.001, 0.5, 0.98])
def test_truncated_gguf(tmp_path, tiny_gguf, keep_fraction):
    data = open(tiny_gguf, "rb").read()
    path = tmp_path / "cut.gguf"
    path.write_bytes(data[: max(8, int(len(data) * keep_fraction))])
    message = _load_error(str(path))
    assert "corrupt or truncated" in message or "is truncated" in message


def _write_gguf(path, arch: str, tensors: dict) -> str:
    import gguf

    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_block_count(1)
    for name, (array, raw_dtype) in tensors.items():
        writer.add_tensor(name, array, raw_dtype=raw_dtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return str(path)


def test_unsupported_architecture(tmp_path):
    path = _write_gguf(tmp_path / "m.gguf", "mamba", {"token_embd.weight": (np.zeros((4, 8), np.float32), None)})
    message = _load_error(path)
    assert "architecture 'mamba' is not supported" in message and "llama" in message


def test_unsupported_quantization(tmp_path, tiny_gguf):
    import gguf

    from mlxserve.models.gguf.reader import open_gguf

    metadata = open_gguf(tiny_gguf).metadata
    kind = gguf.GGMLQuantizationType.Q8_K
    block, size = gguf.GGML_QUANT_SIZES[kind]
    writer = gguf.GGUFWriter(str(tmp_path / "iq.gguf"), "llama")
    for key in ("llama.block_count", "llama.embedding_length", "llama.feed_forward_length",
                "llama.attention.head_count", "llama.attention.layer_norm_rms_epsilon"):  # fmt: skip
        writer.add_uint32(key, 1) if "epsilon" not in key else writer.add_float32(key, 1e-5)
    writer.add_token_list(metadata["tokenizer.ggml.tokens"])
    writer.add_tensor("blk.0.ffn_up.weight", np.zeros((2, 256 // block * size), np.uint8), raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    message = _load_error(str(tmp_path / "iq.gguf"))
    assert "Q8_K is not supported" in message and "Q4_K" in message


def test_bad_dtype_for_gguf(tiny_gguf):
    assert "dtype 'float8' is not supported" in _load_error(tiny_gguf, dtype="float8")


def test_unknown_hub_id_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    message = _load_error("mlxserve-tests/no-such-model-9f2c")
    assert "mlxserve-tests/no-such-model-9f2c" in message
    assert "offline" in message or "not found on the Hugging Face hub" in message
