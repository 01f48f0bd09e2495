"""The continuous-batching engine. ``AsyncEngine`` is the entry point (no MLX import here)."""

from mlxserve.engine.client import AsyncEngine
from mlxserve.engine.stats import EngineStats

__all__ = ["AsyncEngine", "EngineStats"]
