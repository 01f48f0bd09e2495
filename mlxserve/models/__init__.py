"""Model loading: one resolver for HF folders, hub ids, GGUF files and package aliases.

``load_model`` runs on the engine thread (imports MLX lazily); ``resolve_source`` is pure.
"""

from mlxserve.models.capabilities import ModelCapabilities
from mlxserve.models.loaded import LoadedModel
from mlxserve.models.loader import load_model
from mlxserve.models.source import ModelSource, resolve_source

__all__ = ["LoadedModel", "ModelCapabilities", "ModelSource", "load_model", "resolve_source"]
