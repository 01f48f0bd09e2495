"""mlxserve: OpenAI- and Anthropic-compatible inference server built on MLX."""

from mlxserve import backend as _backend

__version__ = "0.1.0"

# Bind MLX to a real BLAS on Linux CPU before anything imports mlx.core.
_backend.prepare()
