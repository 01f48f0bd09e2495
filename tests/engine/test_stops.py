"""OutputStream: incremental text, held-back stop prefixes, token stops, length."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlxserve.engine.request import GenerateRequest, StopParams
from mlxserve.engine.stops import OutputStream
from tiny_models import make_tiny_model


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from mlx_lm.tokenizer_utils import load as load_tokenizer

    path = make_tiny_model(tmp_path_factory.mktemp("stops"), "llama")
    return load_tokenizer(Path(path))


def _stream(tokenizer, stop=(), max_tokens=100, max_model_len=4096, stop_ids=()):
    req = GenerateRequest("s", [1, 2, 3], stop=StopParams(
        max_tokens=max_tokens, stop=tuple(stop), stop_token_ids=tuple(stop_ids)))
    return OutputStream(req, tokenizer.detokenizer, {999}, max_model_len)


def _feed(out: OutputStream, tokenizer, text: str) -> list:
    return [out.add_token(t) for t in tokenizer.encode(text)]


def test_text_that_may_become_a_stop_string_is_held_back(tokenizer):
    out = _stream(tokenizer, stop=["abc"])
    steps = _feed(out, tokenizer, "xxab")
    assert "".join(s.text for s in steps) == "xx"  # "ab" could still become "abc"
    steps += _feed(out, tokenizer, "d!")
    assert "".join(s.text for s in steps) == "xxabd!"
    assert all(s.finish_reason is None for s in steps)


def test_stop_string_split_over_tokens_is_cut_with_everything_after(tokenizer):
    out = _stream(tokenizer, stop=["zz", "the end"])
    steps = _feed(out, tokenizer, "so the en")
    steps += _feed(out, tokenizer, "d is near")
    finished = [s for s in steps if s.finish_reason]
    assert finished[0].finish_reason == "stop" and finished[0].stop_reason == "the end"
    text = "".join(s.text for s in steps[: steps.index(finished[0]) + 1])
    assert text == "so "


def test_token_stops_and_length(tokenizer):
    ids = tokenizer.encode("hello")
    out = _stream(tokenizer, stop_ids=[ids[2]])
    steps = [out.add_token(t) for t in ids]
    assert steps[2].finish_reason == "stop" and steps[2].stop_reason == ids[2]
    out = _stream(tokenizer, max_tokens=2)
    steps = [out.add_token(t) for t in ids[:2]]
    assert [s.finish_reason for s in steps] == [None, "length"]
    out = _stream(tokenizer, max_model_len=5)  # 3 prompt tokens + 2 outputs fill the context
    steps = [out.add_token(t) for t in ids[:2]]
    assert steps[-1].finish_reason == "length"
    assert "".join(s.text for s in steps) == tokenizer.decode(ids[:2])


def _covered(steps) -> int:
    return sum(s.tokens for s in steps)


def test_each_step_covers_the_tokens_of_the_text_it_releases(tokenizer):
    out = _stream(tokenizer, max_tokens=6)
    ids = tokenizer.encode("中国 ok")  # byte tokens: each character spans several of them
    steps = [out.add_token(t) for t in ids[:6]]
    text = "".join(s.text for s in steps)
    assert text.startswith("中国") and steps[-1].finish_reason == "length"
    assert [s.tokens for s in steps][:3] == [0, 0, 3]  # covered once "中" is released
    assert _covered(steps) == 6


def test_tokens_cut_by_a_stop_string_or_a_stop_token_are_never_covered(tokenizer):
    out = _stream(tokenizer, stop=[" 11"])
    steps = _feed(out, tokenizer, "x 9, 10, 11, 12")
    done = next(i for i, s in enumerate(steps) if s.finish_reason)
    assert "".join(s.text for s in steps[: done + 1]) == "x 9, 10,"
    assert _covered(steps[: done + 1]) == len(tokenizer.encode("x 9, 10,"))
    eos = _stream(tokenizer)
    steps = _feed(eos, tokenizer, "hi") + [eos.add_token(999)]
    assert steps[-1].finish_reason == "stop" and _covered(steps) == len(tokenizer.encode("hi"))
