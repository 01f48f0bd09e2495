"""A failing request fails alone: bad adds, lazy evaluation errors, overload refusals."""

from __future__ import annotations

import asyncio

import pytest
from engine_support import collect, greedy, reference_model, run_with_engine, stream_generate_tokens

from mlxserve.config import EngineConfig
from mlxserve.engine.request import GenerateRequest, MultimodalInputs, SamplingParams, StopParams
from mlxserve.errors import EngineOverloaded

PROMPT_TEXT = "once upon a time, in a land far away, there lived"


def _unevaluable_encoder(prompt: list[int]):
    """Embeddings that build fine but cannot be evaluated: they depend on an array leaked
    out of an ``mx.compile`` trace (MLX raises when the graph is evaluated, not built)."""
    def encode(model):
        import mlx.core as mx

        leaked = []

        def trace(x):
            leaked.append(x * 2)
            return x + 1

        mx.compile(trace)(mx.array([1.0]))
        embeddings = model.model.embed_tokens(mx.array(prompt))
        return embeddings + leaked[0].astype(embeddings.dtype), None, None
    return encode


def test_a_lazy_evaluation_failure_fails_only_its_request(tiny_dir):
    path = tiny_dir("llama")
    model, tok = reference_model(path)
    prompts = [tok.encode(PROMPT_TEXT)[k:] for k in range(7)]
    expected = [stream_generate_tokens(model, tok, p, 12) for p in prompts]
    bad_prompt = tok.encode("this one cannot be evaluated")
    bad = GenerateRequest("lazy", bad_prompt, SamplingParams(temperature=0.0),
                          StopParams(max_tokens=12, ignore_eos=True),
                          multimodal=MultimodalInputs(encode=_unevaluable_encoder(bad_prompt)))

    async def body(engine):
        results = await asyncio.gather(*(collect(engine, greedy(f"ok{k}", p, 12))
                                         for k, p in enumerate(prompts[:3])),
                                       collect(engine, bad),
                                       *(collect(engine, greedy(f"ok{k}", p, 12))
                                         for k, p in enumerate(prompts[3:], 3)))
        after = await collect(engine, greedy("after", prompts[0], 12))
        return results, after, engine.stats()

    results, after, stats = run_with_engine(path, body, EngineConfig(max_num_seqs=8))
    failed = results.pop(3)
    assert failed["finish"] == "error" and "primitive" in failed["deltas"][-1].error
    assert [r["tokens"] for r in results] == expected
    assert all(r["finish"] == "length" for r in results)
    assert after["tokens"] == expected[0]
    assert stats.running == 0 and stats.kv_tokens_used == 0


def test_a_bad_add_never_stops_the_loop(tiny_dir):
    """Requests that break inside the engine's add (they skip the client's checks) are
    answered with an error; the request running meanwhile and later ones are served."""
    path = tiny_dir("qwen3")
    model, tok = reference_model(path)
    prompt = tok.encode(PROMPT_TEXT)
    expected = stream_generate_tokens(model, tok, prompt, 20)

    async def body(engine):
        running = asyncio.create_task(collect(engine, greedy("good", prompt, 20)))
        answers = []
        for bad in (GenerateRequest("no-stop", prompt, SamplingParams(), None),
                    GenerateRequest("bad-prompt", [1, "x"], SamplingParams()),
                    greedy("good", prompt, 5)):  # an id already in use
            answers.append(await _raw(engine, bad))
        later = await collect(engine, greedy("later", prompt, 20))
        return answers, await running, later

    answers, running, later = run_with_engine(path, body)
    assert all(a.finish_reason == "error" and a.error for a in answers)
    assert "already in use" in answers[2].error
    assert running["tokens"] == expected and later["tokens"] == expected


async def _raw(engine, request: GenerateRequest):
    """Submit straight to the engine thread (no client-side validation); the last delta."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future = loop.create_future()

    def sink(delta):
        if delta.finished:
            loop.call_soon_threadsafe(lambda: done.done() or done.set_result(delta))

    engine._core.submit_add(request, sink)
    return await asyncio.wait_for(done, 60)


def test_a_full_queue_is_a_refusal_not_an_error_stream(tiny_dir):
    """Requests that all pass the client's quick check at once: the engine thread decides,
    and the ones it cannot queue raise EngineOverloaded (HTTP 503) before any delta."""
    path = tiny_dir("qwen3")
    _, tok = reference_model(path)
    prompt = tok.encode(PROMPT_TEXT)

    async def body(engine):
        streams = [engine.generate(greedy(f"q{k}", prompt, 8)) for k in range(6)]

        async def drain(stream):
            try:
                return [d async for d in stream]
            except EngineOverloaded:
                return "refused"

        return await asyncio.gather(*(drain(s) for s in streams))

    config = EngineConfig(max_num_seqs=1, max_queue_size=1)
    outcomes = run_with_engine(path, body, config)
    refused = [o for o in outcomes if o == "refused"]
    served = [o for o in outcomes if o != "refused"]
    assert refused and served
    for deltas in served:
        assert deltas[-1].finish_reason == "length" and deltas[-1].error is None
        assert sum(len(d.token_ids) for d in deltas) == 8
