"""Open a GGUF file: validated metadata as plain Python values, and its tensor list.

Byte-split parts (one file cut in pieces) are joined into the cache by streaming, so no
second in-memory copy is made. Every failure becomes one ModelLoadError line.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from mlxserve.errors import ModelLoadError

GGUF_MAGIC = b"GGUF"
_COPY_BLOCK = 16 * 1024 * 1024


@dataclass
class GGUFFile:
    paths: tuple[str, ...]  # one file, or the files of a llama.cpp split (-0000k-of-0000n)
    metadata: dict  # key -> str | int | float | bool | list (from the first file)
    tensors: list  # header.TensorInfo items of every file (memory-mapped data)

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))

    def arch_value(self, key: str, default=None):
        return self.metadata.get(f"{self.architecture}.{key}", default)

    def tensor_types(self) -> set[str]:
        return {t.tensor_type.name for t in self.tensors}


def check_magic(path: str) -> None:
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise ModelLoadError(f"cannot read GGUF file '{os.path.basename(path)}': {e.strerror}") from None
    if magic != GGUF_MAGIC:
        raise ModelLoadError(
            f"'{os.path.basename(path)}' is not a GGUF file (it does not start with 'GGUF')"
        )


def join_parts(parts: tuple[str, ...], target: str) -> str:
    """Concatenate byte-parts into ``target`` (atomically), streaming block by block."""
    check_magic(parts[0])
    if os.path.isfile(target):
        return target
    os.makedirs(os.path.dirname(target), exist_ok=True)
    tmp = f"{target}.{os.getpid()}.part"
    try:
        with open(tmp, "wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, out, _COPY_BLOCK)
        os.replace(tmp, target)
    except OSError as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise ModelLoadError(f"cannot join the GGUF parts into the cache: {e.strerror}") from None
    return target


def _read(path: str) -> tuple[dict, list]:
    from mlxserve.models.gguf.header import HeaderError, read_header

    check_magic(path)
    try:
        return read_header(path)
    except (HeaderError, ValueError, OSError) as e:
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelLoadError(
            f"GGUF file '{os.path.basename(path)}' is corrupt or truncated ({detail})"
        ) from None


def open_gguf(*paths: str) -> GGUFFile:
    """Parse the header(s) and tensor tables (data stays memory-mapped). Several paths are
    the files of one llama.cpp split; metadata comes from the first."""
    headers = [_read(path) for path in paths]
    metadata = headers[0][0]
    if "general.architecture" not in metadata:
        raise ModelLoadError(f"GGUF file '{os.path.basename(paths[0])}' has no general.architecture key")
    tensors = [tensor for _, file_tensors in headers for tensor in file_tensors]
    return GGUFFile(tuple(paths), metadata, tensors)
