"""Convert a GGUF (file, split or byte-parts) into a cached Hugging Face folder, once.

The folder (config.json, model.safetensors, tokenizer files, generation_config.json) lives
under ``$MLXSERVE_CACHE/converted/<name>-<key>`` (default ``~/.cache/mlxserve``); the key
hashes the source files (path, size, mtime), the weight format and the converter version,
so a second start skips the conversion.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil

from mlxserve.config import ModelConfig
from mlxserve.errors import ModelLoadError
from mlxserve.models.gguf.tensors import GROUP_SIZE
from mlxserve.models.source import ModelSource

CONVERTER_VERSION = 3
_DONE_MARKER = "mlxserve-conversion.json"


def cache_root() -> str:
    root = os.environ.get("MLXSERVE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mlxserve"
    )
    return os.path.join(root, "converted")


def weight_format(cfg: ModelConfig, cpu_only: bool) -> tuple[bool, str]:
    """(keep quantized?, float dtype for the rest): float32 on CPU unless keep_quantized;
    quantized with float16 scales on GPU unless a float dtype was asked for."""
    if cfg.dtype not in ("auto", "float32", "float16", "bfloat16"):
        raise ModelLoadError(f"dtype '{cfg.dtype}' is not supported; use auto, float32, float16 or bfloat16")
    quantize = cfg.keep_quantized or (not cpu_only and cfg.dtype == "auto")
    if cfg.dtype != "auto":
        return quantize, cfg.dtype
    return quantize, "float32" if cpu_only else "float16"


def conversion_key(paths: tuple[str, ...], quantize: bool, dtype: str) -> str:
    digest = hashlib.sha256()
    for path in paths:
        stat = os.stat(path)
        digest.update(f"{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    digest.update(f"q={quantize}|dtype={dtype}|v={CONVERTER_VERSION}".encode())
    return digest.hexdigest()[:16]


def converted_folder(source: ModelSource, cfg: ModelConfig) -> tuple[str, str]:
    """The cached HF folder for ``source`` (converting first if needed) and the source's
    quantization label (e.g. "gguf-q4_k")."""
    from mlxserve.backend import is_cpu_only

    quantize, dtype = weight_format(cfg, is_cpu_only())
    key = conversion_key(source.paths, quantize, dtype)
    safe_name = "".join(c if c.isalnum() or c in "-_." else "_" for c in source.name)
    target = os.path.join(cache_root(), f"{safe_name}-{key}")
    marker = os.path.join(target, _DONE_MARKER)
    if os.path.isfile(marker):
        with open(marker, encoding="utf-8") as f:
            return target, json.load(f).get("source_quantization", "")
    return target, _convert(source, target, quantize, dtype)


def _gguf_paths(source: ModelSource, scratch: str) -> tuple[str, ...]:
    """The GGUF file(s) to read: one file, a llama.cpp split (each part a GGUF), or
    byte-parts joined into ``scratch``."""
    from mlxserve.models.gguf.reader import join_parts

    if len(source.paths) == 1 or _is_llama_cpp_split(source.paths):
        return source.paths
    return (join_parts(source.paths, os.path.join(scratch, "joined.gguf")),)


def _is_llama_cpp_split(paths: tuple[str, ...]) -> bool:
    from mlxserve.models.gguf.reader import GGUF_MAGIC

    with open(paths[1], "rb") as f:
        return f.read(4) == GGUF_MAGIC


def _convert(source: ModelSource, target: str, quantize: bool, dtype: str) -> str:
    scratch = f"{target}.tmp-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(scratch)
    try:
        label = _write_folder(_gguf_paths(source, scratch), scratch, source.name, quantize, dtype)
        joined = os.path.join(scratch, "joined.gguf")
        if os.path.exists(joined):
            os.remove(joined)
        _publish(scratch, target)
    except OSError as e:
        raise ModelLoadError(f"cannot write the converted model to the cache: {e.strerror}") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return label


def _publish(scratch: str, target: str) -> None:
    try:
        os.replace(scratch, target)
    except OSError:
        if not os.path.isfile(os.path.join(target, _DONE_MARKER)):
            shutil.rmtree(target, ignore_errors=True)
            os.replace(scratch, target)


def _write_folder(paths: tuple[str, ...], out: str, name: str, quantize: bool, dtype: str) -> str:
    """Convert one GGUF (file or split) into ``out``; returns the source quantization label."""
    import mlx.core as mx
    from tqdm import tqdm

    from mlxserve.models.gguf.arch import arch_spec, build_config
    from mlxserve.models.gguf.reader import open_gguf
    from mlxserve.models.gguf.tensors import check_types, iter_converted, source_quantization
    from mlxserve.models.gguf.tokenizer import build_tokenizer

    file = open_gguf(*paths)
    spec = arch_spec(file)
    check_types(file)
    config = build_config(file, spec)
    label = source_quantization(file)
    build_tokenizer(file).save_pretrained(out)
    weights: dict = {}
    bar = tqdm(total=len(file.tensors), desc=f"Converting {name} (once)", unit="tensor")
    for piece in iter_converted(file, spec, config, quantize, getattr(mx, dtype)):
        mx.eval(list(piece.values()))
        weights.update(piece)
        bar.update(1)
    bar.close()
    if quantize:
        config["quantization"] = {"group_size": GROUP_SIZE, "bits": _dominant_bits(weights), "mode": "affine"}
    mx.save_safetensors(os.path.join(out, "model.safetensors"), weights, metadata={"format": "mlx"})
    _write_json(out, "config.json", config)
    _write_json(out, "generation_config.json", _generation_config(config))
    _write_json(out, _DONE_MARKER, {"source_quantization": label, "source": name,
                                    "quantized": quantize, "dtype": dtype})  # fmt: skip
    return label


def _dominant_bits(weights: dict) -> int:
    """The bit width most packed weights use (mlx-lm infers each layer's own from shapes)."""
    counts: dict[int, int] = {}
    for name, scales in weights.items():
        if name.endswith(".scales"):
            packed = weights[name[: -len("scales")] + "weight"]
            bits = packed.shape[-1] * 32 // (scales.shape[-1] * GROUP_SIZE)
            counts[bits] = counts.get(bits, 0) + packed.size
    return max(counts, key=counts.get) if counts else 4


def _generation_config(config: dict) -> dict:
    out = {"eos_token_id": config.get("eos_token_id")}
    if config.get("bos_token_id") is not None:
        out["bos_token_id"] = config["bos_token_id"]
    return out


def _write_json(folder: str, name: str, data: dict) -> None:
    with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
