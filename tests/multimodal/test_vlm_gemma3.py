"""The non-Qwen family: a tiny Gemma 3 VLM (fixed tokens per image, plain RoPE, sliding
window caches, videos as frames), checked against mlx-vlm's own model."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from media_samples import gradient_image
from test_vlm_encode import greedy_from_prepared
from tiny_vlms import make_tiny_vlm

from mlxserve.errors import InvalidRequest
from mlxserve.models.vlm import load_vlm
from mlxserve.multimodal.encode import prepare_multimodal
from mlxserve.multimodal.video import DecodedVideo


@pytest.fixture(scope="module")
def gemma(tmp_path_factory):
    folder = make_tiny_vlm(tmp_path_factory.mktemp("gemma3"), "gemma3")
    return folder, load_vlm(str(folder))


def _ids(loaded, parts) -> list[int]:
    text = loaded.tokenizer.apply_chat_template([{"role": "user", "content": parts}],
                                                add_generation_prompt=True, tokenize=False)
    return loaded.tokenizer.encode(text, add_special_tokens=False)


def _upstream_greedy(folder, ids: list[int], images, steps: int) -> list[int]:
    """mlx-vlm's Gemma 3 model on the same ids: its processor's pixels, its own input
    merge (get_input_embeddings) and its language model with its own caches."""
    from mlx_vlm.utils import load_model

    from mlx_vlm.models.gemma3.processing_gemma3 import Gemma3Processor

    model = load_model(folder)
    model.set_dtype(mx.float32)
    processor = Gemma3Processor.from_pretrained(str(folder))
    pixels = mx.array(processor.image_processor(images=images, return_tensors="np")
                      ["pixel_values"])
    input_ids = mx.array(ids)[None]
    features = model.get_input_embeddings(input_ids, pixels, mask=mx.ones_like(input_ids))
    cache = model.language_model.make_cache()
    out = model.language_model(input_ids, inputs_embeds=features.inputs_embeds, cache=cache)
    tokens = []
    for _ in range(steps):
        token = int(mx.argmax(out.logits[0, -1]).item())
        tokens.append(token)
        out = model.language_model(mx.array([[token]]), cache=cache)
    return tokens


def test_capabilities_and_null_config(gemma):
    _, lm = gemma
    caps = lm.capabilities
    assert caps.has_vision and not caps.mrope and caps.has_sliding_window
    assert not lm.vision.native_video
    # The shipped config has "do_convert_rgb": null, "do_pan_and_scan": null, ...
    assert lm.vision.image_processor.do_pan_and_scan is False


@pytest.mark.slow
def test_two_images_match_mlx_vlm(gemma):
    folder, lm = gemma
    images = [gradient_image(80, 60, seed=1), gradient_image(30, 90, seed=2)]
    ids = _ids(lm, [{"type": "image"}, {"type": "text", "text": "and"}, {"type": "image"},
                    {"type": "text", "text": "describe"}])
    prepared = prepare_multimodal(ids, images, [], lm.vision)
    assert prepared.image_tokens == 8 and prepared.multimodal.media_tokens == 8
    boi, eoi = lm.vision.vision_start_id, lm.vision.vision_end_id
    assert prepared.prompt_tokens.count(boi) == 2 and prepared.prompt_tokens.count(eoi) == 2
    ours = greedy_from_prepared(lm, prepared, 8)
    chunked = greedy_from_prepared(lm, prepared, 8, chunk=5)
    assert ours == _upstream_greedy(folder, prepared.prompt_tokens, images, 8)
    assert chunked == ours


def test_video_must_arrive_as_frames(gemma):
    _, lm = gemma
    ids = _ids(lm, [{"type": "text", "text": "x"}])
    clip = DecodedVideo([np.zeros((32, 32, 3), np.uint8)] * 2, [0.0, 0.5], 2.0, 1.0, 2.0)
    with pytest.raises(InvalidRequest, match="as frames"):
        prepare_multimodal(ids, [], [clip], lm.vision)
