"""Shared pytest set-up: bind MLX to OpenBLAS first, make tests/ importable, and give the
whole session one model cache of its own.

Every test (in-process loads and the servers started in subprocesses alike) converts into
that one cache, so each real model is converted once per session, ~/.cache is never
written, and the cache goes away at the end (CI's disk is shared and sometimes nearly
full: two copies of the same float32 conversions once ran it out). MLXSERVE_TEST_CACHE
names a cache kept across runs instead.
"""

import os
import shutil
import sys
import tempfile

import mlxserve  # noqa: F401  (must come before any mlx.core import)

sys.path.insert(0, os.path.dirname(__file__))

_OWN_CACHE: list[str] = []


def pytest_configure(config):
    kept = os.environ.get("MLXSERVE_TEST_CACHE")
    if not kept:
        kept = tempfile.mkdtemp(prefix="mlxserve-test-cache-")
        _OWN_CACHE.append(kept)
    os.environ["MLXSERVE_CACHE"] = kept


def pytest_unconfigure(config):
    for path in _OWN_CACHE:
        shutil.rmtree(path, ignore_errors=True)
