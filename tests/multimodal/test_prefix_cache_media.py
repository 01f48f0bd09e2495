"""Prefix cache for media requests: keyed on the media content (MultimodalInputs.key_tokens),
so the same image hits and a different image behind the same placeholder tokens does not;
the answers (greedy tokens and their logprobs) equal those with the cache off."""

from __future__ import annotations

import asyncio

import pytest
from media_samples import gradient_image
from test_engine_vlm import TOP_LOGPROBS, _ids
from tiny_vlms import make_tiny_vlm

from mlxserve.config import EngineConfig, ModelConfig
from mlxserve.engine.client import AsyncEngine
from mlxserve.engine.request import GenerateRequest, SamplingParams, StopParams
from mlxserve.multimodal.encode import prepare_multimodal

MAX_TOKENS = 6
CASES = [  # (question, image seed): run in this order, one after the other
    ("what is it", 1),
    ("what colour is it", 1),  # the same image again: hits through the image
    ("what colour is it", 2),  # another image, same placeholders: only the text before
]


async def _run(folder, cache: bool) -> list[dict]:
    engine = AsyncEngine(ModelConfig(model=str(folder)),
                         EngineConfig(max_num_seqs=4, enable_prefix_caching=cache))
    await engine.start()
    try:
        vision, tok = engine.model.vision, engine.model.tokenizer
        sampling = SamplingParams(temperature=0.0, logprobs=True, top_logprobs=TOP_LOGPROBS)
        stop = StopParams(max_tokens=MAX_TOKENS, ignore_eos=True)
        out = []
        for k, (question, seed) in enumerate(CASES):
            parts = [{"type": "image"}, {"type": "text", "text": question}]
            prepared = prepare_multimodal(_ids(tok, parts), [gradient_image(56, 56, seed)],
                                          [], vision)
            request = GenerateRequest(f"m{k}", prepared.prompt_tokens, sampling, stop,
                                      prepared.multimodal)
            got = dict(tokens=[], logprobs=[], cached=0, prompt=prepared.prompt_tokens,
                       media=[i for i, t in enumerate(prepared.multimodal.key_tokens)
                              if t < 0])
            async for delta in engine.generate(request):
                assert delta.error is None, delta.error
                got["tokens"] += delta.token_ids
                got["logprobs"] += delta.logprobs or []
                got["cached"] = max(got["cached"], delta.cached_tokens)
            out.append(got)
        return out
    finally:
        await engine.shutdown()


@pytest.mark.parametrize("family", ["qwen2_5_vl"])
def test_same_image_hits_another_image_does_not_and_answers_match(family, tmp_path):
    folder = make_tiny_vlm(tmp_path, family)
    cached = asyncio.run(_run(folder, cache=True))
    plain = asyncio.run(_run(folder, cache=False))
    first, same, other = cached
    assert first["media"] and first["media"] == same["media"] == other["media"]
    assert first["cached"] == 0
    assert same["cached"] > first["media"][-1]  # the whole image came from the cache
    assert other["cached"] == first["media"][0]  # the text before the image, no more
    assert same["prompt"] == other["prompt"]  # the same token ids: only the pixels differ
    for got, want in zip(cached, plain):
        assert want["cached"] == 0
        assert got["tokens"] == want["tokens"]
        for a, b in zip(got["logprobs"], want["logprobs"]):
            assert a.token_id == b.token_id and abs(a.logprob - b.logprob) < 2e-3
