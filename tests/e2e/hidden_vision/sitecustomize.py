"""Put on PYTHONPATH, this makes Python behave as if Pillow, OpenCV, mlx-vlm and torch were
not installed: every finder on ``sys.meta_path`` answers "not found" for them, so
``import PIL`` raises ModuleNotFoundError and ``importlib.util.find_spec("PIL")`` is None,
exactly as on a text-only install (``pip install mlxserve[cpu]``). Used by
tests/e2e/test_text_only_install.py; nothing of mlxserve is replaced.
"""

import sys

HIDDEN = frozenset({"PIL", "cv2", "mlx_vlm", "torch"})


class _Hiding:
    """Wraps one finder; names under HIDDEN are never found."""

    def __init__(self, finder):
        self._finder = finder

    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] in HIDDEN:
            return None
        find = getattr(self._finder, "find_spec", None)
        return None if find is None else find(fullname, path, target)

    def __getattr__(self, name):
        return getattr(self._finder, name)


sys.meta_path[:] = [_Hiding(finder) for finder in sys.meta_path]
for _name in [m for m in sys.modules if m.partition(".")[0] in HIDDEN]:
    del sys.modules[_name]
