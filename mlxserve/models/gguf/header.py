"""A fast GGUF header parser (metadata + tensor table), data left memory-mapped.

gguf's GGUFReader builds numpy views for every element of every metadata array, which
takes seconds for a 150k-token vocabulary; this reads the same layout with ``struct``.
Layout (GGUF v2/v3, little-endian): magic, version u32, tensor count u64, kv count u64,
kv pairs (string key, u32 type, value), tensor infos (name, n_dims u32, dims u64[n],
type u32, offset u64), padding to ``general.alignment``, tensor data.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
            10: "<Q", 11: "<q", 12: "<d"}  # fmt: skip
_NUMPY = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "<u1",
          10: "<u8", 11: "<i8", 12: "<f8"}  # fmt: skip
_STRING, _ARRAY = 8, 9
_DIRECT_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64}


class HeaderError(ValueError):
    """The bytes do not form a GGUF header (corrupt or truncated)."""


@dataclass
class TensorInfo:
    name: str
    tensor_type: object  # gguf.GGMLQuantizationType
    shape: tuple[int, ...]  # ggml order (fastest dimension first), like gguf's reader
    n_elements: int
    n_bytes: int
    data_offset: int  # absolute, in the file
    data: np.ndarray  # memory-mapped: float for F32/F16/F64, raw uint8 rows otherwise


class _Cursor:
    def __init__(self, buffer):
        self.buffer, self.at = buffer, 0

    def take(self, fmt: str):
        try:
            (value,) = struct.unpack_from(fmt, self.buffer, self.at)
        except struct.error:
            raise HeaderError("header ends early") from None
        self.at += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        size = self.take("<Q")
        if self.at + size > len(self.buffer):
            raise HeaderError("header ends early")
        raw = bytes(self.buffer[self.at : self.at + size])
        self.at += size
        return raw.decode("utf-8", errors="replace")

    def value(self, kind: int):
        if kind in _SCALARS:
            return self.take(_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            return self.array()
        raise HeaderError(f"unknown metadata value type {kind}")

    def array(self):
        kind, count = self.take("<I"), self.take("<Q")
        if kind in _NUMPY:
            width = np.dtype(_NUMPY[kind]).itemsize
            if self.at + count * width > len(self.buffer):
                raise HeaderError("header ends early")
            values = np.frombuffer(self.buffer, _NUMPY[kind], count, self.at)
            self.at += count * width
            return [bool(v) for v in values] if kind == 7 else values.tolist()
        return [self.value(kind) for _ in range(count)]


def read_header(path: str) -> tuple[dict, list[TensorInfo]]:
    """(metadata, tensors) of a GGUF file; raises HeaderError on malformed bytes."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    mapped = np.memmap(path, dtype=np.uint8, mode="r")
    cursor = _Cursor(mapped)
    if bytes(mapped[:4]) != b"GGUF":
        raise HeaderError("bad magic")
    cursor.at = 4
    version = cursor.take("<I")
    if version not in (2, 3):
        raise HeaderError(f"GGUF version {version} is not supported (2, 3)")
    tensor_count, kv_count = cursor.take("<Q"), cursor.take("<Q")
    metadata = {}
    for _ in range(kv_count):
        key = cursor.string()
        metadata[key] = cursor.value(cursor.take("<I"))
    infos = []
    for _ in range(tensor_count):
        name, n_dims = cursor.string(), cursor.take("<I")
        dims = tuple(cursor.take("<Q") for _ in range(n_dims))
        infos.append((name, dims, cursor.take("<I"), cursor.take("<Q")))
    alignment = int(metadata.get("general.alignment", 32))
    start = -(-cursor.at // alignment) * alignment
    tensors = []
    for name, dims, kind, offset in infos:
        try:
            qtype = GGMLQuantizationType(kind)
        except ValueError:
            raise HeaderError(f"tensor {name} has unknown type {kind}") from None
        tensors.append(_tensor(mapped, name, dims, qtype, start + offset, GGML_QUANT_SIZES[qtype]))
    return metadata, tensors


def _tensor(mapped, name, dims, qtype, offset, sizes) -> TensorInfo:
    block, type_size = sizes
    n_elements = int(np.prod(dims)) if dims else 1
    n_bytes = n_elements * type_size // block
    if offset + n_bytes > len(mapped):
        raise HeaderError(f"tensor {name} runs past the end of the file")
    rows = tuple(reversed(dims))
    raw = mapped[offset : offset + n_bytes]
    if qtype.name in _DIRECT_DTYPES:
        data = raw.view(_DIRECT_DTYPES[qtype.name]).reshape(rows)
    else:
        if rows[-1] % block:
            raise HeaderError(f"tensor {name} rows are not whole {qtype.name} blocks")
        data = raw.reshape(*rows[:-1], rows[-1] // block * type_size)
    return TensorInfo(name, qtype, dims, n_elements, n_bytes, offset, data)
