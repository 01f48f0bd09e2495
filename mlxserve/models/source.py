"""Where a model comes from: one resolver for every spelling. Pure Python: no MLX import.

``resolve_source("smollm2-135m")``, ``resolve_source("/models/qwen")``,
``resolve_source("Qwen/Qwen3-0.6B")``, ``resolve_source("m.gguf")``,
``resolve_source("m-00001-of-00003.gguf")`` and ``resolve_source("parts/part*.bin")``
each give one ``ModelSource``.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass

from mlxserve.errors import ModelLoadError
from mlxserve.models.aliases import ALIASES, alias_paths

KIND_HF_FOLDER = "hf_folder"
KIND_HUB = "hub"
KIND_GGUF = "gguf"
KIND_ALIAS = "alias"

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
_SPLIT_PART = re.compile(r"^(?P<stem>.*)-(?P<index>\d{5})-of-(?P<total>\d{5})\.gguf$")


@dataclass(frozen=True)
class ModelSource:
    kind: str  # "hf_folder" | "hub" | "gguf" | "alias"
    paths: tuple[str, ...]  # folder; hub id; GGUF file or its byte-parts in order
    name: str  # display name for /v1/models
    spec: str  # what the user wrote
    # For an alias: what it stands for ("gguf"); otherwise equal to kind.
    format: str = ""

    @property
    def is_gguf(self) -> bool:
        return self.kind == KIND_GGUF or self.format == KIND_GGUF


_BYTE_PART_SUFFIX = re.compile(r"\.part\d+$", re.IGNORECASE)


def _gguf_name(path: str) -> str:
    base = _BYTE_PART_SUFFIX.sub("", os.path.basename(path))
    match = _SPLIT_PART.match(base)
    if match:
        return match.group("stem")
    return base[:-5] if base.lower().endswith(".gguf") else os.path.splitext(base)[0]


def _split_parts(first: str) -> tuple[str, ...]:
    """llama.cpp split names: m-00001-of-00003.gguf → all three parts, checked present."""
    folder, base = os.path.split(first)
    match = _SPLIT_PART.match(base)
    if not match:
        return (first,)
    total = int(match.group("total"))
    parts = tuple(
        os.path.join(folder, f"{match.group('stem')}-{i:05d}-of-{total:05d}.gguf")
        for i in range(1, total + 1)
    )
    missing = [os.path.basename(p) for p in parts if not os.path.isfile(p)]
    if missing:
        raise ModelLoadError(f"GGUF split is incomplete: missing {', '.join(missing)}")
    return parts


_NUMBERED_PART = re.compile(r"^(?P<stem>.*?part)(?P<index>\d+)(?P<suffix>(\.\w+)?)$", re.IGNORECASE)


def _byte_part_siblings(first: str) -> tuple[str, ...]:
    """Given the first of numbered byte-parts (x.part00, part01.bin, ...) in one folder,
    all of them in numeric order; otherwise just ``first``."""
    folder, base = os.path.split(first)
    match = _NUMBERED_PART.match(base)
    if not match:
        return (first,)
    pattern = re.compile(
        re.escape(match.group("stem")) + r"(\d+)" + re.escape(match.group("suffix")) + "$"
    )
    numbered = []
    for name in os.listdir(folder or "."):
        found = pattern.match(name)
        if found:
            numbered.append((int(found.group(1)), os.path.join(folder, name)))
    numbered.sort()
    if len(numbered) < 2 or numbered[0][1] != first:
        return (first,)
    return tuple(path for _, path in numbered)


def _from_files(spec: str, files: tuple[str, ...]) -> ModelSource:
    files = tuple(os.path.abspath(f) for f in files)
    if len(files) == 1:
        files = _split_parts(files[0])
    if len(files) == 1:
        files = _byte_part_siblings(files[0])
    return ModelSource(KIND_GGUF, files, _gguf_name(files[0]), spec, KIND_GGUF)


def _from_folder(spec: str, folder: str) -> ModelSource:
    folder = os.path.abspath(folder)
    if os.path.isfile(os.path.join(folder, "config.json")):
        name = os.path.basename(folder.rstrip(os.sep))
        return ModelSource(KIND_HF_FOLDER, (folder,), name, spec, KIND_HF_FOLDER)
    ggufs = sorted(glob.glob(os.path.join(folder, "*.gguf")))
    if len(ggufs) == 1 or (ggufs and _SPLIT_PART.match(os.path.basename(ggufs[0]))):
        return _from_files(spec, (ggufs[0],))
    raise ModelLoadError(
        f"folder '{spec}' is not a model: it has no config.json (Hugging Face format) "
        "and not exactly one .gguf file"
    )


def resolve_source(spec: str | list[str] | tuple[str, ...]) -> ModelSource:
    """Name what ``spec`` points at, without loading anything.

    Accepted: an alias (see ``mlxserve.models.aliases``), a local Hugging Face folder,
    a ``.gguf`` file (or the first part of a llama.cpp split), byte-parts of one GGUF (a
    glob, a list or comma-separated paths in order, or the first of numbered parts such as
    ``m.gguf.part00`` / ``part01.bin`` with its siblings alongside), or a hub id ``owner/name``.
    """
    if isinstance(spec, (list, tuple)):
        if not spec:
            raise ModelLoadError("no model given")
        missing = [p for p in spec if not os.path.isfile(p)]
        if missing:
            raise ModelLoadError(f"model file not found: {missing[0]}")
        return _from_files(",".join(spec), tuple(spec))
    spec = spec.strip()
    if not spec:
        raise ModelLoadError("no model given")
    if spec in ALIASES:
        alias = ALIASES[spec]
        return ModelSource(KIND_ALIAS, alias_paths(alias), alias.display_name, spec, KIND_GGUF)
    pieces = [os.path.expanduser(p.strip()) for p in spec.split(",")]
    if len(pieces) > 1 and all(os.path.isfile(p) for p in pieces):
        return _from_files(spec, tuple(pieces))
    expanded = os.path.expanduser(spec)
    if os.path.isdir(expanded):
        return _from_folder(spec, expanded)
    if os.path.isfile(expanded):
        return _from_files(spec, (expanded,))
    if any(ch in expanded for ch in "*?["):
        matches = sorted(glob.glob(expanded))
        if matches:
            return _from_files(spec, tuple(matches))
        raise ModelLoadError(f"no model files match '{spec}'")
    if _looks_local(spec) or not _HUB_ID.match(spec):
        known = ", ".join(sorted(ALIASES))
        raise ModelLoadError(
            f"model '{spec}' not found: give a local folder, a .gguf file, "
            f"a hub id like 'owner/name', or one of: {known}"
        )
    return ModelSource(KIND_HUB, (spec,), spec, spec, KIND_HUB)


def _looks_local(spec: str) -> bool:
    return (
        spec.startswith(("/", "./", "../", "~"))
        or spec.lower().endswith((".gguf", ".bin", ".safetensors"))
        or os.sep + os.sep in spec
    )
