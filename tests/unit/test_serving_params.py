"""Params resolution: API values → SamplingParams / StopParams, defaults in one place."""

from __future__ import annotations

import pytest

from mlxserve.errors import InvalidRequest
from mlxserve.serving.chat_input import GenerationOptions
from mlxserve.serving.params import (
    DEFAULT_TEMPERATURE, ContextLimits, check_n, resolve_sampling, resolve_stop,
)
from mlxserve.serving.prompt import merge_template_kwargs


def test_defaults_fill_unset_values():
    sampling = resolve_sampling(GenerationOptions())
    assert sampling.temperature == DEFAULT_TEMPERATURE and sampling.top_p == 1.0
    assert sampling.top_k == 0 and sampling.logit_bias is None


def test_explicit_values_pass_through():
    options = GenerationOptions(temperature=0, top_k=5, seed=3, logprobs=True, top_logprobs=2,
                                logit_bias={7: -100.0}, stop=("\n",))
    sampling = resolve_sampling(options)
    assert (sampling.temperature, sampling.top_k, sampling.seed) == (0, 5, 3)
    assert sampling.logprobs and sampling.top_logprobs == 2
    assert resolve_stop(options, 10, ContextLimits(100)).stop == ("\n",)


def test_default_max_tokens_is_remaining_context_capped():
    assert resolve_stop(GenerationOptions(), 30, ContextLimits(100)).max_tokens == 70
    assert resolve_stop(GenerationOptions(), 30, ContextLimits(100, 16)).max_tokens == 16
    assert resolve_stop(GenerationOptions(max_tokens=5), 30, ContextLimits(100)).max_tokens == 5


@pytest.mark.parametrize("options", [
    GenerationOptions(temperature=3), GenerationOptions(top_p=0), GenerationOptions(top_k=-1),
    GenerationOptions(top_logprobs=21), GenerationOptions(frequency_penalty=float("nan")),
])
def test_bad_sampling_values_raise(options):
    with pytest.raises(InvalidRequest):
        resolve_sampling(options)


def test_bad_stop_values_raise():
    with pytest.raises(InvalidRequest):
        resolve_stop(GenerationOptions(max_tokens=0), 1, ContextLimits(100))
    with pytest.raises(InvalidRequest):
        resolve_stop(GenerationOptions(stop=("",)), 1, ContextLimits(100))


def test_n_bounds():
    check_n(1, 8)
    check_n(8, 8)
    for bad in (0, 9, True):
        with pytest.raises(InvalidRequest):
            check_n(bad, 8)


def test_template_kwargs_request_overrides_server_default():
    merged = merge_template_kwargs({"enable_thinking": True, "a": 1}, {"enable_thinking": False})
    assert merged == {"enable_thinking": False, "a": 1}
    with pytest.raises(InvalidRequest):
        merge_template_kwargs({}, {"messages": []})
