"""VLM loading, media encoding and M-RoPE positions against mlx-vlm's own generate, with
tiny random-weight Qwen-VL models."""

from __future__ import annotations


import mlx.core as mx
import numpy as np
import pytest
from media_samples import gradient_image, video_bytes
from tiny_vlms import make_tiny_vlm

from mlxserve.errors import InvalidRequest
from mlxserve.models.vlm import is_vlm_config, load_vlm, processor_kwargs
from mlxserve.multimodal.encode import EmbeddingCache, prepare_multimodal
from mlxserve.multimodal.media_config import MediaConfig
from mlxserve.multimodal.video import VideoSampling, decode_video

QWEN_FAMILIES = ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"]


@pytest.fixture(scope="module")
def vlm_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("vlms")
    return {family: make_tiny_vlm(root, family) for family in QWEN_FAMILIES + ["qwen2_vl_nulls"]}


@pytest.fixture(scope="module")
def loaded(vlm_folders):
    return {family: load_vlm(str(path)) for family, path in vlm_folders.items()}


@pytest.fixture(scope="module")
def clip():
    """8 frames of a 2 s clip: 4 frames a second, so one temporal patch (2 frames) spans
    0.5 s, which Qwen2.5-VL's 2 tokens_per_second make one position: the absolute-time
    positions then equal mlx-vlm's (which ignores time) and parity can be checked."""
    data = video_bytes(frames=20, fps=10.0, width=64, height=64, seed=3)  # 2 s
    return decode_video(data, part="video", sampling=VideoSampling(4.0, 8), config=MediaConfig())


@pytest.fixture(scope="module")
def clip_2fps():
    """8 frames of a 4 s clip, 2 a second: Qwen3-VL's "<t seconds>" markers then match
    mlx-vlm's processor, which assumes frames at its configured 2 fps."""
    data = video_bytes(frames=40, fps=10.0, width=64, height=64, seed=3)
    return decode_video(data, part="video", sampling=VideoSampling(2.0, 8), config=MediaConfig())


def _prompt_ids(loaded_model, parts: list[dict]) -> list[int]:
    messages = [{"role": "user", "content": parts}]
    text = loaded_model.tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                      tokenize=False)
    return loaded_model.tokenizer.encode(text, add_special_tokens=False), text


def greedy_from_prepared(loaded_model, prepared, max_tokens: int, chunk: int | None = None,
                         logprobs: list | None = None):
    """Prefill from the prepared embeddings + positions (optionally in chunks), then
    decode greedily on the text decoder. ``logprobs`` collects each step's log-softmax."""
    decoder = loaded_model.model
    embeddings, positions, extras = prepared.multimodal.encode(decoder)
    ids = mx.array(prepared.prompt_tokens)[None]
    cache = decoder.make_cache()
    length = ids.shape[1]
    chunk = chunk or length
    for start in range(0, length, chunk):
        end = min(length, start + chunk)
        logits = decoder(ids[:, start:end], cache=cache,
                         input_embeddings=embeddings[None, start:end],
                         position_ids=None if positions is None else positions[:, None, start:end],
                         vision_extras=extras)
    out = []
    for _ in range(max_tokens):
        token = int(mx.argmax(logits[0, -1]).item())
        out.append(token)
        if logprobs is not None:
            last = logits[0, -1].astype(mx.float32)
            logprobs.append(np.array(last - mx.logsumexp(last)))
        logits = decoder(mx.array([[token]]), cache=cache, rope_deltas=[extras.rope_delta])
    return out


def reference_tokens(folder, prompt_text: str, images=None, videos=None, max_tokens=8,
                     logprobs: list | None = None):
    """mlx-vlm's own greedy generate; ``logprobs`` collects each step's log-softmax."""
    from mlx_vlm import load
    from mlx_vlm.generate.dispatch import stream_generate

    model, processor = load(str(folder))
    model.set_dtype(mx.float32)
    tokens, prompt_tokens = [], None
    for result in stream_generate(model, processor, prompt_text, image=images, video=videos,
                                  max_tokens=max_tokens, temperature=0.0):
        if len(tokens) < max_tokens:
            tokens.append(int(result.token))
            if logprobs is not None:
                logprobs.append(np.array(result.logprobs.reshape(-1).astype(mx.float32)))
        prompt_tokens = result.prompt_tokens
    return tokens, prompt_tokens


def assert_same_distributions(ours: list, reference: list) -> None:
    """Every step's full log-softmax agrees, not just its argmax: a tiny random model's
    greedy text often repeats one or two tokens, which would prove little."""
    assert len(ours) == len(reference) > 0
    for step, (mine, theirs) in enumerate(zip(ours, reference)):
        assert mine.shape == theirs.shape and np.ptp(theirs) > 1.0, step
        np.testing.assert_allclose(mine, theirs, atol=2e-3, err_msg=f"step {step}")


def test_detection_and_capabilities(vlm_folders, loaded):
    import json

    config = json.loads((vlm_folders["qwen2_vl"] / "config.json").read_text())
    assert is_vlm_config(config)
    assert not is_vlm_config({"model_type": "qwen2", "hidden_size": 64})
    for family in QWEN_FAMILIES:
        caps = loaded[family].capabilities
        assert caps.has_vision and caps.has_video and caps.mrope and caps.dtype == "float32"
        assert loaded[family].vision is not None


def test_text_decoder_shares_the_vlm_weights(loaded):
    lm = loaded["qwen2_vl"]
    decoder_weight = lm.model.language_model.model.embed_tokens.weight
    vlm_weight = lm.vision.vlm.language_model.model.embed_tokens.weight
    assert decoder_weight is vlm_weight  # the same array object: no second copy


def test_null_processor_config_falls_back_to_defaults(loaded):
    kwargs = processor_kwargs({"min_pixels": None, "max_pixels": None, "image_mean": None,
                               "patch_size": None, "size": {"shortest_edge": None}}, 14, False)
    assert kwargs == {"patch_size": 14}
    nulls = loaded["qwen2_vl_nulls"].vision.image_processor
    assert nulls.min_pixels == 56 * 56 and nulls.image_mean == [0.5, 0.5, 0.5]
    prepared = prepare_multimodal(
        _prompt_ids(loaded["qwen2_vl_nulls"], [{"type": "image"}])[0],
        [gradient_image(80, 60)], [], loaded["qwen2_vl_nulls"].vision)
    assert prepared.image_tokens > 0


@pytest.mark.slow
@pytest.mark.parametrize("family", QWEN_FAMILIES)
def test_image_prefill_matches_mlx_vlm_generate(family, vlm_folders, loaded):
    lm = loaded[family]
    images = [gradient_image(80, 60, seed=1), gradient_image(40, 90, seed=2)]  # two sizes
    ids, text = _prompt_ids(lm, [{"type": "image"}, {"type": "text", "text": "and"},
                                 {"type": "image"}, {"type": "text", "text": "describe"}])
    prepared = prepare_multimodal(ids, images, [], lm.vision)
    our_logprobs, ref_logprobs = [], []
    ours = greedy_from_prepared(lm, prepared, 8, logprobs=our_logprobs)
    chunked = greedy_from_prepared(lm, prepared, 8, chunk=7)
    ref, ref_prompt_tokens = reference_tokens(vlm_folders[family], text, images=images,
                                              logprobs=ref_logprobs)
    print(f"{family}: ours={ours} ref={ref} prompt={len(prepared.prompt_tokens)}")
    assert len(prepared.prompt_tokens) == ref_prompt_tokens
    assert ours == ref
    assert_same_distributions(our_logprobs, ref_logprobs)
    assert chunked == ours


@pytest.mark.slow
@pytest.mark.parametrize("family", QWEN_FAMILIES)
def test_native_video_matches_mlx_vlm_and_beats_frames_as_images(family, vlm_folders, loaded,
                                                                 clip, clip_2fps):
    lm = loaded[family]
    clip = clip_2fps if family == "qwen3_vl" else clip
    ids, text = _prompt_ids(lm, [{"type": "video"}, {"type": "text", "text": "what happens"}])
    native = prepare_multimodal(ids, [], [clip], lm.vision)
    as_images = prepare_multimodal(ids, [], [clip], lm.vision, video_as_images=True)
    print(f"\n{family}: {len(clip.frames)} frames: native video prompt "
          f"{len(native.prompt_tokens)} tokens ({native.video_tokens} media), frames as images "
          f"{len(as_images.prompt_tokens)} tokens ({as_images.image_tokens} media)")
    assert native.video_tokens * 1.8 < as_images.image_tokens
    assert native.multimodal.media_tokens == native.video_tokens
    our_logprobs, ref_logprobs = [], []
    ours = greedy_from_prepared(lm, native, 6, logprobs=our_logprobs)
    frames = [f for f in clip.frames]
    ref, ref_prompt_tokens = reference_tokens(vlm_folders[family], text, videos=[frames],
                                              max_tokens=6, logprobs=ref_logprobs)
    print(f"{family}: ours={ours} ref={ref}")
    assert ours == ref
    assert_same_distributions(our_logprobs, ref_logprobs)
    greedy_from_prepared(lm, as_images, 2)  # the frames-as-images path runs too


def test_placeholder_count_must_match(loaded):
    lm = loaded["qwen2_vl"]
    ids, _ = _prompt_ids(lm, [{"type": "image"}, {"type": "text", "text": "x"}])
    with pytest.raises(InvalidRequest, match="1 image and 0 video placeholders"):
        prepare_multimodal(ids, [], [], lm.vision)


def test_embedding_cache_reuses_features(loaded):
    lm = loaded["qwen2_5_vl"]
    cache = EmbeddingCache(max_entries=2)
    ids, _ = _prompt_ids(lm, [{"type": "image"}, {"type": "text", "text": "x"}])
    image = gradient_image(64, 64, seed=5)
    first = prepare_multimodal(ids, [image], [], lm.vision, cache=cache)
    emb1, _, _ = first.multimodal.encode(lm.model)
    second = prepare_multimodal(ids, [image.copy()], [], lm.vision, cache=cache)
    assert second.multimodal.cache_key == first.multimodal.cache_key
    emb2, _, _ = second.multimodal.encode(lm.model)
    assert (cache.hits, cache.misses) == (1, 1)
    assert np.array_equal(np.array(emb1), np.array(emb2))
    for seed in (6, 7):  # two new images evict the first (max 2 entries)
        other = prepare_multimodal(ids, [gradient_image(64, 64, seed=seed)], [], lm.vision,
                                   cache=cache)
        other.multimodal.encode(lm.model)
    assert len(cache) == 2
    prepare_multimodal(ids, [image], [], lm.vision, cache=cache).multimodal.encode(lm.model)
    assert cache.misses == 4


def test_text_only_request_on_the_text_decoder(loaded):
    """Text-only prompts run on the decoder with plain positions (M-RoPE degenerates)."""
    lm = loaded["qwen3_vl"]
    ids, _ = _prompt_ids(lm, [{"type": "text", "text": "hello there"}])
    decoder = lm.model
    full = decoder(mx.array(ids)[None])
    cache = decoder.make_cache()
    decoder(mx.array(ids[:-3])[None], cache=cache)
    tail = decoder(mx.array(ids[-3:])[None], cache=cache)
    assert np.allclose(np.array(full[0, -3:]), np.array(tail[0]), atol=1e-4)


def test_qwen2_5_vl_video_positions_follow_absolute_time(loaded):
    """At 2 frames a second a temporal patch spans 1 s = 2 positions (tokens_per_second),
    as in the reference Qwen2.5-VL; Qwen2-VL advances one position per patch."""
    data = video_bytes(frames=20, fps=10.0, width=56, height=56, seed=3)
    slow = decode_video(data, part="video", sampling=VideoSampling(2.0, 8), config=MediaConfig())
    assert len(slow.frames) == 4
    for family, step in (("qwen2_5_vl", 2), ("qwen2_vl", 1)):
        lm = loaded[family]
        ids, _ = _prompt_ids(lm, [{"type": "video"}, {"type": "text", "text": "x"}])
        prepared = prepare_multimodal(ids, [], [slow], lm.vision)
        _, positions, _ = prepared.multimodal.encode(lm.model)
        video_id = lm.vision.video_token_id
        where = [i for i, t in enumerate(prepared.prompt_tokens) if t == video_id]
        times = sorted(set(np.array(positions)[0, where].tolist()))
        assert len(times) == 2 and times[1] - times[0] == step
