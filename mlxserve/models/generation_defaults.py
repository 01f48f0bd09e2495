"""The sampling a model's authors suggest, from its ``generation_config.json``.

Hugging Face semantics: the file's temperature/top_p/top_k/min_p apply only when it sets
``do_sample: true``; otherwise (or without the file) decoding is greedy, as
``mlx_lm.generate`` does. Pure Python: no MLX import.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from mlxserve.models.hf_folder import read_json

@dataclass(frozen=True)
class SamplingDefaults:
    temperature: float = 0.0  # 0: greedy
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    source: str = "greedy"  # "generation_config.json" | "greedy"


def _number(value, kind):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return kind(value)


def sampling_defaults(folder: str) -> SamplingDefaults:
    """The folder's suggested sampling, or greedy when it suggests none."""
    config = read_json(os.path.join(folder, "generation_config.json"))
    if not isinstance(config, dict) or config.get("do_sample") is not True:
        return SamplingDefaults()
    temperature = _number(config.get("temperature"), float)
    return SamplingDefaults(
        temperature=1.0 if temperature is None else temperature,  # HF's default when sampling
        top_p=_number(config.get("top_p"), float),
        top_k=_number(config.get("top_k"), int),
        min_p=_number(config.get("min_p"), float),
        source="generation_config.json",
    )
