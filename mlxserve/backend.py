"""Compute back-end set-up, done once before MLX is first imported.

On Linux, the ``mlx-cpu`` wheel links MLX against a bundled *reference* BLAS, which runs a
float32 matmul ~50x slower than an optimized one. When the ``cpu`` extra is installed,
``cmeel-openblas`` ships an unprefixed OpenBLAS; we load it into the global symbol scope
before ``mlx.core`` so MLX's ``cblas_*`` / LAPACK calls bind to it instead.

OpenBLAS needs ``libgfortran.so.5``. mlx-cpu already bundles one under a hashed soname,
so we write a copy of that file whose soname is the plain one into a cache folder and load
it first: no system package is needed. Nothing here imports MLX.

Set ``MLXSERVE_BLAS=reference`` to keep MLX's bundled BLAS (for comparisons).
``OPENBLAS_NUM_THREADS`` defaults to half the cores (see ``_default_threads``).
"""

from __future__ import annotations

import ctypes
import glob
import hashlib
import os
import sys
import sysconfig
from dataclasses import dataclass

_GFORTRAN_SONAME = b"libgfortran.so.5"


@dataclass
class BlasStatus:
    name: str  # "openblas", "reference", "not-applicable"
    detail: str = ""


_status: BlasStatus | None = None


def _site_dirs() -> list[str]:
    dirs = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    dirs += [p for p in sys.path if p.endswith("site-packages")]
    seen, out = set(), []
    for d in dirs:
        if d and d not in seen and os.path.isdir(d):
            seen.add(d)
            out.append(d)
    return out


def _find(pattern: str) -> str | None:
    for d in _site_dirs():
        hits = sorted(glob.glob(os.path.join(d, pattern)))
        if hits:
            return hits[0]
    return None


def _cache_dir() -> str:
    root = os.environ.get("MLXSERVE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mlxserve"
    )
    return os.path.join(root, "blas")


def _gfortran_with_plain_soname(bundled: str) -> str:
    """Return a copy of mlx-cpu's bundled libgfortran whose soname is libgfortran.so.5."""
    data = bytearray(open(bundled, "rb").read())
    digest = hashlib.sha1(data).hexdigest()[:12]
    out_dir = os.path.join(_cache_dir(), digest)
    out = os.path.join(out_dir, "libgfortran.so.5")
    if os.path.exists(out):
        return out
    old = os.path.basename(bundled).encode() + b"\0"
    at = data.find(old)
    if at < 0 or data.find(old, at + 1) >= 0 or len(old) < len(_GFORTRAN_SONAME) + 1:
        raise RuntimeError("unexpected layout of the bundled libgfortran")
    data[at : at + len(_GFORTRAN_SONAME) + 1] = _GFORTRAN_SONAME + b"\0"
    os.makedirs(out_dir, exist_ok=True)
    tmp = f"{out}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, out)
    return out


def _default_threads() -> int:
    """Half the cores: OpenBLAS threads spin while they wait, and the engine thread, the
    HTTP thread and anything else on the machine need cores too. On 2 shared cores, two
    BLAS threads made SmolLM2 decode 4-8x slower than one (measured here)."""
    return max(1, (os.cpu_count() or 2) // 2)


def _load_openblas() -> BlasStatus:
    openblas = _find("cmeel.prefix/lib/libopenblas.so.0")
    if openblas is None:
        return BlasStatus("reference", "cmeel-openblas not installed (pip install 'mlxserve[cpu]')")
    # Read by OpenBLAS when it loads; a user's own setting wins.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(_default_threads()))
    gfortran = _find("mlx_cpu.libs/libgfortran-*.so*")
    quadmath = _find("mlx_cpu.libs/libquadmath-*.so*")
    try:
        if quadmath:
            ctypes.CDLL(quadmath, mode=ctypes.RTLD_GLOBAL)
        if gfortran:
            ctypes.CDLL(_gfortran_with_plain_soname(gfortran), mode=ctypes.RTLD_GLOBAL)
        ctypes.CDLL(openblas, mode=ctypes.RTLD_GLOBAL)
    except (OSError, RuntimeError) as e:
        return BlasStatus("reference", f"could not load OpenBLAS: {e}")
    return BlasStatus("openblas", openblas)


def prepare() -> BlasStatus:
    """Idempotent: pick the BLAS before ``mlx.core`` loads. Returns what was chosen."""
    global _status
    if _status is not None:
        return _status
    if not sys.platform.startswith("linux") or _find("mlx_cpu.libs") is None:
        _status = BlasStatus("not-applicable", "not a Linux mlx-cpu install")
    elif os.environ.get("MLXSERVE_BLAS", "").lower() == "reference":
        _status = BlasStatus("reference", "MLXSERVE_BLAS=reference")
    elif "mlx.core" in sys.modules:
        _status = BlasStatus("reference", "mlx.core was imported before mlxserve")
    else:
        _status = _load_openblas()
    return _status


def is_cpu_only() -> bool:
    """True when MLX has no GPU here (imports MLX: call after prepare())."""
    import mlx.core as mx

    return not mx.is_available(mx.gpu) if hasattr(mx, "is_available") else (
        mx.default_device() == mx.cpu
    )


def is_cuda() -> bool:
    """True on MLX's CUDA back-end (an NVIDIA GPU); False on Metal and on a CPU."""
    import mlx.core as mx

    return hasattr(mx, "cuda") and mx.cuda.is_available()


def device_memory() -> int | None:
    """Bytes of the GPU's memory, or None on a CPU. Metal reports ``memory_size``, CUDA
    ``total_memory`` (reading only the first left a CUDA GPU sized as a CPU: KV budget
    from host memory, MLX's buffer cache unbounded, 4-bit checkpoints never dequantized)."""
    import mlx.core as mx

    if is_cpu_only():
        return None
    info = mx.device_info()
    return info.get("memory_size") or info.get("total_memory") or None
