"""Per-request behaviour inside the batch: sampling, stops, abort, bad input, embeddings."""

from __future__ import annotations

import asyncio

import pytest
from engine_support import collect, greedy, reference_model, run_with_engine, stream_generate_tokens

from mlxserve.config import EngineConfig
from mlxserve.engine.request import (GenerateRequest, MultimodalInputs, SamplingParams,
                                     StopParams)
from mlxserve.errors import InvalidRequest

PROMPT_TEXT = "once upon a time, in a land far away, there lived"


def _sampled(rid, prompt, seed, n=16, **params) -> GenerateRequest:
    sampling = SamplingParams(temperature=params.pop("temperature", 0.9), seed=seed, **params)
    return GenerateRequest(rid, list(prompt), sampling, StopParams(max_tokens=n, ignore_eos=True))


def test_seeded_sampling_is_reproducible_whatever_the_batch_mates(tiny_dir):
    path = tiny_dir("llama")
    _, tok = reference_model(path)
    prompt = tok.encode(PROMPT_TEXT)
    target = dict(top_p=0.95, top_k=40, min_p=0.02)

    async def body(engine):
        alone = await collect(engine, _sampled("alone", prompt, 7, **target))
        mates = [
            _sampled("m0", prompt[:5], 1, temperature=1.5),
            greedy("m1", tok.encode("abc"), 20),
            _sampled("m2", prompt, 99, top_k=3, presence_penalty=1.0),
        ]
        results = await asyncio.gather(collect(engine, _sampled("in-batch", prompt, 7, **target)),
                                       *(collect(engine, m) for m in mates))
        other_seed = await collect(engine, _sampled("seed8", prompt, 8, **target))
        return alone["tokens"], results[0]["tokens"], other_seed["tokens"]

    alone, in_batch, other_seed = run_with_engine(path, body)
    assert alone == in_batch
    assert other_seed != alone


def test_sampling_filters_restrict_the_choice(tiny_dir):
    path = tiny_dir("qwen2")
    _, tok = reference_model(path)
    prompt = tok.encode(PROMPT_TEXT)

    async def body(engine):
        top1 = await collect(engine, _sampled("k1", prompt, 3, temperature=1.5, top_k=1))
        tiny_p = await collect(engine, _sampled("p", prompt, 3, temperature=1.5, top_p=1e-6))
        argmax = await collect(engine, greedy("g", prompt, 16))
        return top1["tokens"], tiny_p["tokens"], argmax["tokens"]

    top1, tiny_p, argmax = run_with_engine(path, body)
    assert top1 == argmax  # top_k=1 leaves only the argmax
    assert tiny_p == argmax  # a vanishing top_p keeps only the most likely token


def _penalised_greedy(model, prompt: list[int], n: int, frequency: float,
                      presence: float) -> list[int]:
    """An independent reference: full forwards of mlx-lm's model, OpenAI's penalties on the
    counts of the tokens generated so far, argmax."""
    import mlx.core as mx
    import numpy as np

    out: list[int] = []
    for _ in range(n):
        logits = np.array(model(mx.array([prompt + out]))[0, -1].astype(mx.float32))
        counts = np.bincount(out, minlength=len(logits))[: len(logits)]
        out.append(int(np.argmax(logits - frequency * counts - presence * (counts > 0))))
    return out


def test_logit_bias_and_penalties_change_the_choice(tiny_dir):
    path = tiny_dir("qwen2")  # its margins are small enough for penalties of 2 to matter
    model, tok = reference_model(path)
    prompt = tok.encode(PROMPT_TEXT)
    forced = tok.encode("z")[0]
    penalties = [(2.0, 0.0), (0.0, 2.0), (-2.0, 0.0)]

    def penalised(rid, frequency, presence):
        return GenerateRequest(rid, prompt, SamplingParams(
            temperature=0.0, frequency_penalty=frequency, presence_penalty=presence),
            StopParams(max_tokens=24, ignore_eos=True))

    async def body(engine):
        biased = await collect(engine, GenerateRequest(
            "b", prompt, SamplingParams(temperature=0.0, logit_bias={forced: 100.0}),
            StopParams(max_tokens=6, ignore_eos=True)))
        plain = await collect(engine, greedy("g", prompt, 24))
        runs = await asyncio.gather(*(collect(engine, penalised(f"p{i}", *fp))
                                      for i, fp in enumerate(penalties)))
        return biased["tokens"], plain["tokens"], [r["tokens"] for r in runs]

    biased, plain, runs = run_with_engine(path, body)
    assert biased == [forced] * 6
    for (frequency, presence), tokens in zip(penalties, runs):
        assert tokens == _penalised_greedy(model, prompt, 24, frequency, presence)
        assert tokens != plain  # each penalty alone changes this greedy answer


def test_logprobs_with_top_alternatives(tiny_dir):
    path = tiny_dir("qwen3")
    _, tok = reference_model(path)
    req = GenerateRequest("lp", tok.encode(PROMPT_TEXT),
                          SamplingParams(temperature=0.0, logprobs=True, top_logprobs=3),
                          StopParams(max_tokens=5, ignore_eos=True))
    got = run_with_engine(path, lambda e: collect(e, req))
    entries = [lp for d in got["deltas"] if d.logprobs for lp in d.logprobs]
    assert [e.token_id for e in entries] == got["tokens"]
    for e in entries:
        assert len(e.top) == 3
        assert e.top[0][0] == e.token_id  # greedy picks the best alternative
        assert e.logprob == pytest.approx(e.top[0][1], abs=1e-5)
        assert e.top[0][1] >= e.top[1][1] >= e.top[2][1] and e.logprob <= 0.0


def _boundary_stop(tok, tokens: list[int]) -> tuple[str, str]:
    """The text of ``tokens``, and a 3-character stop string that spans a boundary between
    two tokens' text (found with the tokenizer's own decode of each prefix; mlx-lm's
    streaming detokenizer turns byte 0 into 'Ā')."""
    ends = [len(tok.decode(tokens[: i + 1])) for i in range(len(tokens))]
    full = tok.decode(tokens)
    for a, b, c in zip(ends, ends[1:], ends[2:]):
        stop = full[b - 1 : b + 2]
        if b > a and c > b + 1 and stop.isprintable() and stop.isascii() and full.count(stop) == 1:
            return full, stop
    pytest.skip("no suitable token boundary in this output")


def test_stop_string_spanning_tokens_never_reaches_the_output(tiny_dir):
    path = tiny_dir("qwen2")
    model, tok = reference_model(path)
    prompt = tok.encode(PROMPT_TEXT)
    tokens = stream_generate_tokens(model, tok, prompt, 60)
    full, stop = _boundary_stop(tok, tokens)

    async def body(engine):
        free = await collect(engine, greedy("free", prompt, 60))
        stopped = await collect(engine, greedy("stop", prompt, 60, stop=("@@never@@", stop)))
        return free, stopped

    free, stopped = run_with_engine(path, body)
    assert free["text"] == full
    assert stopped["finish"] == "stop" and stopped["stop_reason"] == stop
    assert stopped["text"] == full[: full.index(stop)]
    assert len(stopped["tokens"]) < len(tokens)


def test_eos_and_stop_token_ids_finish_with_stop(tiny_dir):
    path = tiny_dir("llama")
    model, tok = reference_model(path)
    prompt = tok.encode(PROMPT_TEXT)
    tokens = stream_generate_tokens(model, tok, prompt, 12)
    req = GenerateRequest("st", prompt, SamplingParams(temperature=0.0),
                          StopParams(max_tokens=12, stop_token_ids=(tokens[5],)))
    got = run_with_engine(path, lambda e: collect(e, req))
    cut = tokens.index(tokens[5])
    assert got["tokens"] == tokens[: cut + 1]
    assert got["finish"] == "stop" and got["stop_reason"] == tokens[5]


def test_abort_frees_the_request_within_a_step(tiny_dir):
    """Two requests that cannot end by themselves soon (3000 tokens each, ignore_eos): one
    aborted, one whose consumer leaves. The engine's counters show both aborted with a
    handful of tokens generated, not 6000."""
    path = tiny_dir("llama")
    _, tok = reference_model(path)
    prompt = tok.encode(PROMPT_TEXT)

    async def body(engine):
        other = asyncio.create_task(collect(engine, greedy("other", prompt, 30)))
        seen = []
        async for delta in engine.generate(greedy("long", prompt, 3000)):
            seen.append(delta)
            if len(seen) == 3:
                engine.abort("long")
        broke = 0
        async for _delta in engine.generate(greedy("broken", prompt, 3000)):
            broke += 1
            if broke == 2:
                break  # the consumer leaves: the engine aborts the request
        done = await other
        while engine.stats().running or engine.stats().waiting:
            await asyncio.sleep(0.02)  # until aborted (or, when aborts fail, done: ~5 s)
        return seen, done, engine.stats()

    seen, other, stats = run_with_engine(path, body)
    assert seen[-1].finish_reason == "abort"
    assert len(seen) <= 3 + 2  # at most one step in flight after the abort
    assert other["finish"] == "length" and len(other["tokens"]) == 30
    assert stats.total_aborted == 2 and stats.total_finished == 3
    assert stats.total_generated_tokens <= 30 + (3 + 2) + (2 + 2)  # a step in flight each
    assert stats.running == 0 and stats.waiting == 0 and stats.kv_tokens_used == 0


@pytest.mark.parametrize("bad, param", [
    (dict(prompt_tokens=[]), "prompt"),
    (dict(stop=StopParams(max_tokens=0)), "max_tokens"),
    (dict(prompt_tokens=list(range(50)) * 90), "messages"),
    (dict(sampling=SamplingParams(temperature=5.0)), "temperature"),
    (dict(sampling=SamplingParams(top_p=0.0)), "top_p"),
    (dict(prompt_tokens=[10**6]), "prompt"),
])
def test_bad_input_is_rejected_before_the_batch_while_others_continue(tiny_dir, bad, param):
    path = tiny_dir("qwen3")
    _, tok = reference_model(path)
    prompt = tok.encode(PROMPT_TEXT)

    async def body(engine):
        good = asyncio.create_task(collect(engine, greedy("good", prompt, 20)))
        await asyncio.sleep(0)
        fields = dict(request_id="bad", prompt_tokens=[1, 2, 3]) | bad
        with pytest.raises(InvalidRequest) as info:
            engine.generate(GenerateRequest(**fields))
        return info.value, await good

    error, good = run_with_engine(path, body)
    assert error.param == param
    assert good["finish"] == "length" and len(good["tokens"]) == 20


def _embedding_encoder(prompt: list[int], fail: bool = False):
    def encode(model):
        import mlx.core as mx

        if fail:
            raise ValueError("cannot decode the image")
        return model.model.embed_tokens(mx.array(prompt)), None, None
    return encode


def test_prefill_from_embeddings_equals_the_token_path(tiny_dir):
    path = tiny_dir("llama")
    model, tok = reference_model(path)
    prompt = tok.encode(PROMPT_TEXT)
    expected = stream_generate_tokens(model, tok, prompt, 12)
    chunked = EngineConfig(max_num_batched_tokens=8, prefill_chunk_size=5)

    def request(rid, fail=False):
        media = MultimodalInputs(encode=_embedding_encoder(prompt, fail), media_tokens=0)
        return GenerateRequest(rid, prompt, SamplingParams(temperature=0.0),
                               StopParams(max_tokens=12, ignore_eos=True), multimodal=media)

    async def body(engine):
        results = await asyncio.gather(collect(engine, request("emb")),
                                       collect(engine, request("bad", fail=True)),
                                       collect(engine, greedy("tok", prompt, 12)))
        return results

    emb, failed, tok_path = run_with_engine(path, body, chunked)
    assert emb["tokens"] == expected == tok_path["tokens"]
    assert failed["finish"] == "error" and "image" in failed["deltas"][-1].error


def test_kv_budget_admits_by_use_and_rejects_what_can_never_fit(tiny_dir):
    from mlxserve.engine.kv_budget import kv_bytes_per_token

    path = tiny_dir("qwen3")
    _, tok = reference_model(path)
    import json
    import os

    config = json.load(open(os.path.join(path, "config.json")))
    budget = EngineConfig(kv_cache_memory_bytes=100 * kv_bytes_per_token(config, "float32"),
                          enable_prefix_caching=False)  # its share would leave 75 tokens
    prompt = tok.encode(PROMPT_TEXT)[:30]

    async def body(engine):
        assert engine.stats().kv_tokens_total == 100
        with pytest.raises(InvalidRequest):
            engine.generate(greedy("huge", prompt, 80))  # 30 + 80 > 100: never fits
        first = asyncio.create_task(collect(engine, greedy("a", prompt, 30)))
        second = asyncio.create_task(collect(engine, greedy("b", prompt, 30)))
        peak_running, peak_used = 0, 0
        while not (first.done() and second.done()):
            peak_running = max(peak_running, engine.stats().running)
            peak_used = max(peak_used, engine.stats().kv_tokens_used)
            await asyncio.sleep(0.001)
        return first.result(), second.result(), (peak_running, peak_used), engine.stats()

    first, second, peaks, stats = run_with_engine(path, body, budget)
    assert len(first["tokens"]) == len(second["tokens"]) == 30
    assert first["tokens"] == second["tokens"]
    # 60 + 60 > 100 for their whole lives, but admission reserves what is used (31 tokens
    # and headroom each), so both run at once, within the budget
    assert peaks[0] == 2 and peaks[1] <= 100
    assert stats.kv_tokens_used == 0


def test_start_raises_the_load_error(tmp_path):
    import asyncio as aio

    from mlxserve.config import ModelConfig
    from mlxserve.engine.client import AsyncEngine
    from mlxserve.errors import MlxserveError

    async def main():
        engine = AsyncEngine(ModelConfig(model=str(tmp_path / "missing-model")))
        with pytest.raises(MlxserveError):
            await engine.start()
        assert not engine.ready

    aio.run(main())
