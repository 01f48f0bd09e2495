"""Load a local Hugging Face folder (safetensors, MLX-quantized or not) with mlx-lm.

Runs on the engine thread. mlx-lm builds the model (``mlx_lm.models.<family>.Model``) and
the ``TokenizerWrapper``; this module settles the compute dtype and probes capabilities.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from mlxserve.backend import device_memory, is_cuda
from mlxserve.config import ModelConfig
from mlxserve.errors import ModelLoadError
from mlxserve.models.capabilities import ModelCapabilities
from mlxserve.models.loaded import LoadedModel

_DTYPES = ("float32", "float16", "bfloat16")


def read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return {}
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelLoadError(f"{os.path.basename(path)} is not valid JSON: {e}") from None


def _as_ids(value) -> set[int]:
    if value is None:
        return set()
    if isinstance(value, int):
        return {value}
    return {int(v) for v in value if isinstance(v, int)}


def collect_eos_ids(folder: str, config: dict, tokenizer) -> set[int]:
    """EOS ids from config.json, generation_config.json and the tokenizer, together."""
    # mlx-lm's config already took generation_config's ids over config.json's: read both.
    raw_config = read_json(os.path.join(folder, "config.json"))
    ids = _as_ids(config.get("eos_token_id")) | _as_ids(raw_config.get("eos_token_id"))
    ids |= _as_ids(config.get("text_config", {}).get("eos_token_id"))
    ids |= _as_ids(read_json(os.path.join(folder, "generation_config.json")).get("eos_token_id"))
    ids |= set(getattr(tokenizer, "eos_token_ids", None) or ())
    if getattr(tokenizer, "eos_token_id", None) is not None:
        ids.add(int(tokenizer.eos_token_id))
    return ids


def choose_dtype(cfg: ModelConfig, checkpoint_dtype: str, cpu_only: bool) -> str:
    if cfg.dtype == "auto":
        return "float32" if cpu_only else checkpoint_dtype
    if cfg.dtype not in _DTYPES:
        raise ModelLoadError(f"dtype '{cfg.dtype}' is not supported; use auto or one of {_DTYPES}")
    return cfg.dtype


def _checkpoint_dtype(model) -> str:
    """The dtype most floating parameters have (ignores quantization scales' role)."""
    import mlx.core as mx
    from mlx.utils import tree_flatten

    counts: dict[str, int] = {}
    for _, value in tree_flatten(model.parameters()):
        if mx.issubdtype(value.dtype, mx.floating):
            name = str(value.dtype).replace("mlx.core.", "")
            counts[name] = counts.get(name, 0) + value.size
    return max(counts, key=counts.get) if counts else "float32"


def _quantization_label(config: dict) -> str:
    quant = config.get("quantization") or {}
    if not quant:
        return "none"
    return f"{quant.get('mode', 'affine')}-{quant.get('bits', '?')}bit"


DEQUANTIZED_SHARE = 0.6  # CUDA: dequantize when 16-bit weights take at most this of memory


def _dequantize_here(model, config: dict, cpu_only: bool) -> bool:
    """CPU: always (float32 BLAS beats MLX's CPU quantized kernels). CUDA: when the 16-bit
    weights fit in ``DEQUANTIZED_SHARE`` of the device's memory (MLX's CUDA quantized
    matmuls were measured 8x slower than bf16 at 64 rows on an H200). Metal: never (its
    quantized kernels are good)."""
    import mlx.core as mx
    from mlx.utils import tree_flatten

    if cpu_only:
        return True
    if not is_cuda():
        return False
    bits = int((config.get("quantization") or {}).get("bits", 4))
    packed = sum(v.nbytes for _, v in tree_flatten(model.parameters()) if v.dtype == mx.uint32)
    others = sum(v.nbytes for _, v in tree_flatten(model.parameters()) if v.dtype != mx.uint32)
    wanted = packed * 16 // bits + others
    memory = device_memory() or 0
    return wanted <= DEQUANTIZED_SHARE * memory


def settle_dtype(model, config: dict, cfg: ModelConfig, cpu_only: bool) -> tuple[str, str]:
    """Dequantize (CPU; CUDA when memory allows; unless keep_quantized) and cast floats.
    Returns (dtype, quantization)."""
    import mlx.core as mx
    from mlx_lm.utils import dequantize_model

    quantization = _quantization_label(config)
    if (quantization != "none" and not cfg.keep_quantized
            and _dequantize_here(model, config, cpu_only)):
        model = dequantize_model(model)
        quantization = "none"
    dtype = choose_dtype(cfg, _checkpoint_dtype(model), cpu_only)
    target = getattr(mx, dtype)
    model.set_dtype(target, lambda d: mx.issubdtype(d, mx.floating))
    return dtype, quantization


def _load_with_mlx_lm(folder: Path, cfg: ModelConfig):
    from mlx_lm.utils import load_model as mlx_lm_load_model
    from mlx_lm.utils import load_tokenizer

    try:
        model, config = mlx_lm_load_model(
            folder, lazy=True, trust_remote_code=cfg.trust_remote_code
        )
    except FileNotFoundError:
        raise ModelLoadError(f"no *.safetensors weights in model folder '{folder.name}'") from None
    except ValueError as e:
        raise ModelLoadError(_describe_value_error(folder, e)) from None
    try:
        tokenizer = load_tokenizer(folder, eos_token_ids=config.get("eos_token_id"))
    except Exception as e:  # noqa: BLE001 - transformers raises many kinds; report one line
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelLoadError(f"cannot load the tokenizer of '{folder.name}': {detail}") from None
    return model, config, tokenizer


def _describe_value_error(folder: Path, error: Exception) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    if "not supported" in text.lower():
        return f"model '{folder.name}': {text} (architectures come from mlx-lm's models)"
    return f"cannot load model '{folder.name}': {text}"


def _apply_chat_template_override(tokenizer, cfg: ModelConfig) -> None:
    if cfg.chat_template is None:
        return
    try:
        with open(cfg.chat_template, encoding="utf-8") as f:
            tokenizer._tokenizer.chat_template = f.read()
    except OSError as e:
        raise ModelLoadError(f"cannot read chat template file: {e.strerror}") from None


def load_hf_folder(folder: str, cfg: ModelConfig, name: str, quant_hint: str = "") -> LoadedModel:
    """Load a folder holding config.json + *.safetensors + tokenizer files.

    ``quant_hint`` names the source quantization (e.g. "gguf-q4_k") when the folder is a
    conversion; it is reported in capabilities when the weights stay quantized.
    """
    import mlx.core as mx

    from mlxserve.backend import is_cpu_only
    from mlxserve.models.probe import probe_capabilities

    path = Path(folder)
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"model folder '{path.name}' has no config.json")
    model, config, tokenizer = _load_with_mlx_lm(path, cfg)
    _apply_chat_template_override(tokenizer, cfg)
    dtype, quantization = settle_dtype(model, config, cfg, is_cpu_only())
    mx.eval(model.parameters())
    if quant_hint and quantization != "none":
        quantization = f"{quant_hint}->{quantization}"
    caps = probe_capabilities(model, tokenizer, config, folder, dtype, quantization)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        capabilities=caps,
        name=name,
        path=str(path),
        eos_token_ids=collect_eos_ids(folder, config, tokenizer),
        config=config,
    )
