"""Hub ids: a snapshot already in the local Hugging Face cache loads without network."""

from __future__ import annotations

import shutil

import pytest
from tiny_models import make_tiny_model

from mlxserve.config import ModelConfig
from mlxserve.errors import ModelLoadError
from mlxserve.models import load_model

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _cache_snapshot(hub_cache, repo_id: str, source_folder: str) -> None:
    """Lay a folder out the way huggingface_hub caches a downloaded snapshot."""
    repo = hub_cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(source_folder, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)


def test_cached_hub_snapshot_loads_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    _cache_snapshot(tmp_path / "hub", "mlxserve-tests/tiny-qwen3", make_tiny_model(tmp_path, "qwen3"))
    loaded = load_model(ModelConfig(model="mlxserve-tests/tiny-qwen3"))
    assert loaded.name == "mlxserve-tests/tiny-qwen3"
    assert loaded.capabilities.model_type == "qwen3"
    assert loaded.path.endswith(COMMIT)


def test_cached_hub_snapshot_without_config_is_explained(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    only_readme = tmp_path / "gguf-repo"
    only_readme.mkdir()
    (only_readme / "README.txt").write_text("weights are in model.gguf")
    _cache_snapshot(tmp_path / "hub", "mlxserve-tests/gguf-only", str(only_readme))
    with pytest.raises(ModelLoadError, match="has no config.json"):
        load_model(ModelConfig(model="mlxserve-tests/gguf-only"))
