"""``load_model(cfg)``: resolve the source, fetch/convert it to an HF folder, load it.

Runs on the engine thread; MLX is imported lazily inside the loaders.
"""

from __future__ import annotations

from mlxserve.config import ModelConfig
from mlxserve.errors import ModelLoadError
from mlxserve.extras import vision_extra_missing_reason
from mlxserve.models.loaded import LoadedModel
from mlxserve.models.source import KIND_HF_FOLDER, KIND_HUB, ModelSource, resolve_source


def load_model(cfg: ModelConfig) -> LoadedModel:
    """Load ``cfg.model`` (folder, hub id, GGUF, or alias) as an mlx-lm model + tokenizer."""
    from mlxserve.models.hf_folder import load_hf_folder

    source = resolve_source(cfg.model)
    folder, quant_hint = materialize(source, cfg)
    if _is_vlm_folder(folder):
        from mlxserve.models.vlm import load_vlm

        require_vision_extra(source.name)

        return load_vlm(folder, source.name, cfg.dtype)
    return load_hf_folder(folder, cfg, source.name, quant_hint)


def require_vision_extra(name: str) -> None:
    """Raise when ``name`` (a vision-language model) cannot be served for want of the
    vision extra: one clear start-up error instead of an ImportError."""
    reason = vision_extra_missing_reason()
    if reason is not None:
        raise ModelLoadError(f"{name} is a vision-language model and {reason}")


def check_folder_servable(folder: str, name: str) -> None:
    """Before anything loads: a local VLM folder needs the vision extra."""
    if _is_vlm_folder(folder):
        require_vision_extra(name)


def _is_vlm_folder(folder: str) -> bool:
    """A vision-language model mlx-vlm loads (its text decoder serves text requests)."""
    import os

    from mlxserve.models.hf_folder import read_json
    from mlxserve.models.vlm import is_vlm_config

    path = os.path.join(folder, "config.json")
    if not os.path.isfile(path):
        return False
    return is_vlm_config(read_json(path))


def materialize(source: ModelSource, cfg: ModelConfig) -> tuple[str, str]:
    """A local HF folder for ``source`` (downloading or converting first), and the
    source's quantization label when it was converted ("" otherwise)."""
    if source.kind == KIND_HF_FOLDER:
        return source.paths[0], ""
    if source.kind == KIND_HUB:
        from mlxserve.models.hub import download_snapshot, require_config

        return require_config(download_snapshot(source.paths[0], cfg.revision), source.spec), ""
    if source.is_gguf:
        from mlxserve.models.gguf.convert import converted_folder

        return converted_folder(source, cfg)
    raise ModelLoadError(f"unknown model source kind '{source.kind}'")
