"""Optional extras: whether one is installed, and the hint an error gives to install it.

Checked without importing the packages: Pillow, OpenCV and mlx-vlm are heavy, and a
text-only install (``.[cpu]``, ``.[cuda]`` or plain) must never need them. Pure Python.
"""

from __future__ import annotations

import importlib.util

# The vision extra's packages: module name → distribution name (what pip installs).
VISION_PACKAGES = {"PIL": "pillow", "cv2": "opencv-python", "mlx_vlm": "mlx-vlm"}
VISION_INSTALL = "pip install 'mlxserve[vision]' (from a clone: pip install -e '.[cpu,vision]')"


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_vision_packages() -> list[str]:
    """Distribution names of the vision extra's packages that cannot be imported."""
    return [dist for module, dist in VISION_PACKAGES.items() if not _importable(module)]


def vision_extra_missing_reason() -> str | None:
    """None when the vision extra is installed; else a sentence saying how to install it."""
    missing = missing_vision_packages()
    if not missing:
        return None
    return (f"the 'vision' extra is not installed (missing {', '.join(missing)}); "
            f"install it with {VISION_INSTALL}")
