"""GGUF tensors → MLX arrays under mlx-lm names.

Two targets:
- float: every tensor dequantized (gguf package, numpy) to float32: the CPU path.
- quantized: Q4_0/Q4_1/Q8_0 files are read natively by ``mx.load`` and stay packed
  (MLX affine, group 32); any other quantized tensor (K-quants, Q5_x, ...) is dequantized
  and requantized to MLX affine 4-bit (8-bit where the source had more than 4 bits).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from mlxserve.errors import ModelLoadError
from mlxserve.models.gguf.arch import ArchSpec, fix_tensor, hf_tensor_name, needs_float_fix
from mlxserve.models.gguf.reader import GGUFFile

FLOAT_TYPES = {"F32", "F16", "BF16", "F64"}
NATIVE_MLX_TYPES = FLOAT_TYPES - {"BF16", "F64"} | {"Q4_0", "Q4_1", "Q8_0"}
GROUP_SIZE = 32
# Requantized to 4 bits (more than these sources hold); everything else to 8 bits.
_FOUR_BIT_OR_LESS = {"Q4_0", "Q4_1", "Q4_K", "Q3_K", "Q2_K", "IQ4_NL", "IQ4_XS", "IQ3_S",
                     "IQ3_XXS", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ1_S", "IQ1_M", "TQ1_0",
                     "TQ2_0", "MXFP4", "NVFP4"}  # fmt: skip
# Activation/intermediate types llama.cpp never stores weights in (gguf cannot decode them).
_UNSUPPORTED = {"Q8_1", "Q8_K", "Q1_0"}
SUPPORTED_TEXT = (
    "F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, "
    "IQ1_S..IQ4_XS, TQ1_0, TQ2_0, MXFP4, NVFP4"
)


def check_types(file: GGUFFile) -> None:
    bad = sorted(file.tensor_types() & _UNSUPPORTED)
    if bad:
        raise ModelLoadError(
            f"GGUF quantization {', '.join(bad)} is not supported; supported: {SUPPORTED_TEXT}"
        )


def source_quantization(file: GGUFFile) -> str:
    """The main weight type, e.g. "gguf-q4_k" (the most common quantized type)."""
    counts: dict[str, int] = {}
    for tensor in file.tensors:
        kind = tensor.tensor_type.name
        if kind not in FLOAT_TYPES:
            counts[kind] = counts.get(kind, 0) + int(tensor.n_elements)
    return f"gguf-{max(counts, key=counts.get).lower()}" if counts else "gguf-float"


def dequantized(tensor) -> np.ndarray:
    """A GGUF tensor as float32 numpy in row-major (HF) shape."""
    from gguf import quants

    kind = tensor.tensor_type.name
    shape = tuple(int(d) for d in reversed(tensor.shape))
    if kind in ("F32", "F16", "F64"):
        return np.asarray(tensor.data, dtype=np.float32).reshape(shape)
    try:
        return quants.dequantize(tensor.data, tensor.tensor_type).reshape(shape)
    except (NotImplementedError, ValueError) as e:
        raise ModelLoadError(f"cannot dequantize GGUF {kind} tensor {tensor.name}: {e}") from None


def _bits_for(kind: str) -> int:
    return 4 if kind in _FOUR_BIT_OR_LESS else 8


def _requantize(name: str, value: np.ndarray, kind: str, float_dtype) -> dict:
    import mlx.core as mx

    array = mx.array(value).astype(float_dtype)
    if kind in FLOAT_TYPES or value.ndim != 2 or value.shape[-1] % GROUP_SIZE:
        return {name: array}
    weight, scales, biases = mx.quantize(array, group_size=GROUP_SIZE, bits=_bits_for(kind))
    stem = name[: -len(".weight")]
    return {name: weight, f"{stem}.scales": scales, f"{stem}.biases": biases}


def iter_converted(
    file: GGUFFile, spec: ArchSpec, config: dict, quantize: bool, float_dtype
) -> Iterator[dict]:
    """Yield, tensor by tensor, {mlx-lm name: mx.array} pieces of the converted weights."""
    import mlx.core as mx

    native = quantize and file.tensor_types() <= NATIVE_MLX_TYPES
    packed = _load_native(file.paths) if native else {}
    for tensor in file.tensors:
        name = hf_tensor_name(spec, tensor.name)
        if name is None:
            yield {}
            continue
        kind = tensor.tensor_type.name
        if native and kind not in FLOAT_TYPES:
            yield _native_piece(packed, tensor.name, name, spec, config)
            continue
        value = fix_tensor(spec, config, name, dequantized(tensor))
        if quantize:
            yield _requantize(name, value, kind, float_dtype)
        else:
            yield {name: mx.array(value).astype(float_dtype)}


def _load_native(paths: tuple[str, ...]) -> dict:
    import mlx.core as mx

    arrays: dict = {}
    for path in paths:
        try:
            arrays.update(mx.load(path))
        except (RuntimeError, ValueError) as e:
            raise ModelLoadError(f"MLX cannot read this GGUF file: {e}") from None
    return arrays


def _native_piece(packed: dict, gguf_name: str, name: str, spec: ArchSpec, config: dict) -> dict:
    """An MLX-packed tensor (weight, scales, biases) under its new name; row permutation
    for llama q/k commutes with packing (groups run along each row)."""
    import mlx.core as mx

    stem_in, stem_out = gguf_name[: -len(".weight")], name[: -len(".weight")]
    piece = {}
    for suffix in ("weight", "scales", "biases"):
        array = packed[f"{stem_in}.{suffix}"]
        if needs_float_fix(spec, name):
            array = mx.array(fix_tensor(spec, config, name, np.array(array)))
        piece[f"{stem_out}.{suffix}"] = array
    return piece
