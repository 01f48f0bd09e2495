"""The sampling a model's authors suggest, from its ``generation_config.json``.

Hugging Face semantics: the file's temperature/top_p/top_k/min_p apply only when it sets
``do_sample: true``; otherwise (or without the file) decoding is greedy, as
``mlx_lm.generate`` does (``sampling_defaults``, for ``mlxserve generate``). The server
(``server_sampling_defaults``) takes the same fields, and repetition_penalty, as the
values of fields a request leaves out, as vLLM's ``--generation-config auto`` does; a file
without ``do_sample: true`` suggests nothing there, and the API's own defaults stay.
Pure Python: no MLX import.
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


SERVER_FIELDS = {"temperature": float, "top_p": float, "top_k": int, "min_p": float,
                 "repetition_penalty": float, "presence_penalty": float,
                 "frequency_penalty": float}


def suggested(folder: str | None) -> dict | None:
    """The numbers of ``SERVER_FIELDS`` the folder's generation_config.json sets, or None
    when it does not set ``do_sample: true`` (HF: the numbers then do not apply)."""
    config = read_json(os.path.join(folder, "generation_config.json")) if folder else None
    if not isinstance(config, dict) or config.get("do_sample") is not True:
        return None
    found = {k: _number(config.get(k), kind) for k, kind in SERVER_FIELDS.items()}
    return {k: v for k, v in found.items() if v is not None}


def sampling_defaults(folder: str) -> SamplingDefaults:
    """The folder's suggested sampling, or greedy when it suggests none."""
    found = suggested(folder)
    if found is None:
        return SamplingDefaults()
    return SamplingDefaults(
        temperature=found.get("temperature", 1.0),  # HF's default when sampling
        top_p=found.get("top_p"), top_k=found.get("top_k"), min_p=found.get("min_p"),
        source="generation_config.json",
    )


def server_sampling_defaults(folder: str | None, source: str = "auto",
                             override: dict | None = None) -> dict:
    """Field -> value for a request that leaves the field out: the folder's suggestion
    (``source`` "auto"; "vllm": none, as vLLM names it) under ``override``'s values
    (already ``checked_override``: the CLI checks them)."""
    found = suggested(folder) if source == "auto" else None
    return {**(found or {}), **(override or {})}


def checked_override(values: dict) -> dict:
    """``--override-generation-config``'s fields as numbers (ValueError: a bad one)."""
    out = {}
    for key, value in values.items():
        kind = SERVER_FIELDS.get(key)
        if kind is None:
            raise ValueError(f"unknown field '{key}' (known: {', '.join(SERVER_FIELDS)})")
        number = _number(value, float)
        if number is None or (kind is int and number != int(number)):
            raise ValueError(f"'{key}' must be a{'n integer' if kind is int else ' number'}")
        out[key] = kind(number)
    return out
