"""Media requests in the one engine: batched with each other and with text requests, each
matching the same request run alone through the VLM's text decoder."""

from __future__ import annotations

import asyncio

import mlx.core as mx
import numpy as np
import pytest
from media_samples import gradient_image, video_bytes
from test_vlm_encode import greedy_from_prepared
from tiny_vlms import make_tiny_vlm

from mlxserve.config import EngineConfig, ModelConfig
from mlxserve.engine.client import AsyncEngine
from mlxserve.engine.request import GenerateRequest, SamplingParams, StopParams
from mlxserve.models.vlm import load_vlm
from mlxserve.multimodal.encode import prepare_multimodal
from mlxserve.multimodal.media_config import MediaConfig
from mlxserve.multimodal.video import VideoSampling, decode_video

MAX_TOKENS = 6
TOP_LOGPROBS = 5


def _ids(tokenizer, parts) -> list[int]:
    text = tokenizer.apply_chat_template([{"role": "user", "content": parts}],
                                         add_generation_prompt=True, tokenize=False)
    return tokenizer.encode(text, add_special_tokens=False)


def _text_alone(loaded, ids: list[int], logprobs: list) -> list[int]:
    decoder = loaded.model
    cache = decoder.make_cache()
    logits = decoder(mx.array(ids)[None], cache=cache)
    out = []
    for _ in range(MAX_TOKENS):
        token = int(mx.argmax(logits[0, -1]).item())
        out.append(token)
        last = logits[0, -1].astype(mx.float32)
        logprobs.append(np.array(last - mx.logsumexp(last)))
        logits = decoder(mx.array([[token]]), cache=cache)
    return out


def assert_logprobs_match(engine_logprobs: list, reference: list) -> None:
    """The engine's logprob of each token and of its top alternatives equal the reference
    distribution's: a stronger check than the greedy tokens, which a tiny random model
    often repeats."""
    assert len(engine_logprobs) == len(reference) == MAX_TOKENS
    for entry, distribution in zip(engine_logprobs, reference):
        assert abs(entry.logprob - distribution[entry.token_id]) < 2e-3
        assert len(entry.top) == TOP_LOGPROBS
        for token, logprob in entry.top:
            assert abs(logprob - distribution[token]) < 2e-3


async def _collect(engine: AsyncEngine, request: GenerateRequest) -> tuple[list[int], list, int]:
    tokens, logprobs, prompt_tokens = [], [], 0
    async for delta in engine.generate(request):
        assert delta.error is None, delta.error
        tokens += delta.token_ids
        logprobs += delta.logprobs or []
        prompt_tokens = delta.prompt_tokens or prompt_tokens
    return tokens, logprobs, prompt_tokens


@pytest.mark.slow
@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_three_media_and_three_text_requests_at_once(family, tmp_path):
    folder = make_tiny_vlm(tmp_path, family)
    reference = load_vlm(str(folder))
    tok = reference.tokenizer
    clip = decode_video(video_bytes(frames=20, fps=10.0, width=64, height=64, seed=1),
                        part="video", sampling=VideoSampling(2.0, 4), config=MediaConfig())
    media_cases = [
        ([{"type": "image"}, {"type": "text", "text": "what is it"}], [gradient_image(80, 60)], []),
        ([{"type": "image"}, {"type": "image"}, {"type": "text", "text": "compare"}],
         [gradient_image(40, 90, seed=2), gradient_image(64, 64, seed=3)], []),
        ([{"type": "video"}, {"type": "text", "text": "what happens"}], [], [clip]),
    ]
    texts = ["hello there", "write a poem", "one two three four"]
    expected, expected_logprobs, requests = [], [], []
    for i, (parts, images, videos) in enumerate(media_cases):
        prepared = prepare_multimodal(_ids(tok, parts), images, videos, reference.vision)
        expected_logprobs.append([])
        expected.append(greedy_from_prepared(reference, prepared, MAX_TOKENS,
                                             logprobs=expected_logprobs[-1]))
        # A fresh preparation for the engine (its own vision front and cache).
        requests.append((f"media-{i}", parts, images, videos, len(prepared.prompt_tokens)))
    for i, text in enumerate(texts):
        ids = _ids(tok, [{"type": "text", "text": text}])
        expected_logprobs.append([])
        expected.append(_text_alone(reference, ids, expected_logprobs[-1]))

    async def run() -> list[tuple[list[int], list, int]]:
        engine = AsyncEngine(ModelConfig(model=str(folder)), EngineConfig(max_num_seqs=8))
        await engine.start()
        try:
            vision = engine.model.vision
            assert vision is not None and engine.model.capabilities.mrope
            greedy = SamplingParams(temperature=0.0, logprobs=True, top_logprobs=TOP_LOGPROBS)
            stop = StopParams(max_tokens=MAX_TOKENS, ignore_eos=True)
            reqs = []
            for rid, parts, images, videos, _ in requests:
                prepared = prepare_multimodal(_ids(tok, parts), images, videos, vision)
                reqs.append(GenerateRequest(rid, prepared.prompt_tokens, greedy, stop,
                                            prepared.multimodal))
            for i, text in enumerate(texts):
                reqs.append(GenerateRequest(f"text-{i}", _ids(tok, [{"type": "text",
                                                                      "text": text}]),
                                            greedy, stop))
            return await asyncio.gather(*[_collect(engine, r) for r in reqs])
        finally:
            await engine.shutdown()

    results = asyncio.run(run())
    for (tokens, logprobs, _), want, distributions in zip(results, expected, expected_logprobs):
        assert tokens == want
        assert_logprobs_match(logprobs, distributions)
    for (_, _, prompt_tokens), (_, _, _, _, n) in zip(results[:3], requests):
        assert prompt_tokens == n  # usage counts the media tokens
