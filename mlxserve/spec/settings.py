"""``--speculative-config`` JSON → ``SpeculativeConfig``, with errors that say what is
wrong (the CLI prints them and exits before loading anything)."""

from __future__ import annotations

import json

from mlxserve.config import SpeculativeConfig
from mlxserve.spec.registry import METHODS

MAX_SPECULATIVE_TOKENS = 16
_COMMON = frozenset({"method", "num_speculative_tokens", "adaptive"})
_FIELDS = frozenset({"prompt_lookup_min", "prompt_lookup_max", "model"})


def parse_speculative_config(text: str) -> SpeculativeConfig:
    """Parse and validate; ValueError with a readable message on any problem."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"--speculative-config is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ValueError("--speculative-config must be a JSON object")
    method = data.get("method")
    if method not in METHODS:
        raise ValueError(f"--speculative-config: method must be one of {sorted(METHODS)}, "
                         f"got {method!r}")
    _check_keys(method, data)
    config = SpeculativeConfig(
        method=method, num_speculative_tokens=_count(data, "num_speculative_tokens", 3, 1,
                                                     MAX_SPECULATIVE_TOKENS),
        prompt_lookup_min=_count(data, "prompt_lookup_min", 2, 1, 64),
        prompt_lookup_max=_count(data, "prompt_lookup_max", 5, 1, 64),
        model=_text(data, "model"),
        options={k: v for k, v in data.items()
                 if k not in {"method", "num_speculative_tokens"} | _FIELDS})
    if not isinstance(data.get("adaptive", True), bool):
        raise ValueError("--speculative-config: adaptive must be true or false")
    if config.prompt_lookup_min > config.prompt_lookup_max:
        raise ValueError("--speculative-config: prompt_lookup_min must not exceed "
                         "prompt_lookup_max")
    return config


def _check_keys(method: str, data: dict) -> None:
    spec = METHODS[method]
    unknown = sorted(set(data) - _COMMON - spec.keys)
    if unknown:
        allowed = sorted(_COMMON | spec.keys)
        raise ValueError(f"--speculative-config: unknown key(s) {unknown} for method "
                         f"{method!r} (accepted: {allowed})")
    missing = sorted(spec.required - set(data))
    if missing:
        raise ValueError(f"--speculative-config: method {method!r} needs {missing}")


def _count(data: dict, key: str, default: int, low: int, high: int) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"--speculative-config: {key} must be an integer in "
                         f"[{low}, {high}], got {value!r}")
    return value


def _text(data: dict, key: str) -> str | None:
    value = data.get(key)
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise ValueError(f"--speculative-config: {key} must be a non-empty string")
    return value
