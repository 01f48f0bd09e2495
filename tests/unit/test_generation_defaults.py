"""`mlxserve generate`'s sampling: the model's generation_config.json when it sets
do_sample (Hugging Face semantics), else greedy."""

from __future__ import annotations

import json

from mlxserve.models.generation_defaults import SamplingDefaults, sampling_defaults


def folder_with(tmp_path, config: dict | None):
    if config is not None:
        (tmp_path / "generation_config.json").write_text(json.dumps(config))
    return str(tmp_path)


def test_no_file_is_greedy(tmp_path):
    assert sampling_defaults(folder_with(tmp_path, None)) == SamplingDefaults(temperature=0.0)


def test_sampling_values_without_do_sample_are_ignored(tmp_path):
    """transformers only samples when do_sample is true: temperature alone means greedy."""
    folder = folder_with(tmp_path, {"temperature": 0.7, "top_p": 0.9, "eos_token_id": 2})
    assert sampling_defaults(folder).temperature == 0.0
    assert sampling_defaults(folder).source == "greedy"


def test_do_sample_takes_the_file_values(tmp_path):
    folder = folder_with(tmp_path, {"do_sample": True, "temperature": 0.6, "top_p": 0.95,
                                    "top_k": 20, "min_p": 0.05})
    assert sampling_defaults(folder) == SamplingDefaults(
        temperature=0.6, top_p=0.95, top_k=20, min_p=0.05, source="generation_config.json")


def test_do_sample_without_temperature_is_temperature_one(tmp_path):
    defaults = sampling_defaults(folder_with(tmp_path, {"do_sample": True, "top_k": "50"}))
    assert defaults.temperature == 1.0 and defaults.top_k is None  # a string is not a number
