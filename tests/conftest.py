"""Shared pytest set-up: bind MLX to OpenBLAS first, make tests/ importable."""

import os
import sys

import mlxserve  # noqa: F401  (must come before any mlx.core import)

sys.path.insert(0, os.path.dirname(__file__))
