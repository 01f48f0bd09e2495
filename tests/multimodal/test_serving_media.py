"""Media content parts in chat messages: extraction, placeholders through message
normalization, frames-as-images arrangement, request limits. Pure Python."""

from __future__ import annotations

import numpy as np
import pytest

from mlxserve.errors import InvalidRequest
from mlxserve.multimodal.media_config import MediaConfig
from mlxserve.multimodal.video import DecodedVideo
from mlxserve.serving.media import arrange_for_model, check_media_limits, extract_media
from mlxserve.serving.messages import normalize_messages


def _img(url: str) -> dict:
    return {"type": "image_url", "image_url": {"url": url}}


def test_extract_media_in_prompt_order():
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [_img("data:a"), {"type": "text", "text": "and"},
                                     {"type": "video_url", "video_url": {"url": "v1"}}]},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "video", "video": "v2"},
                                     {"type": "image_url", "image_url": "data:b"}]},
    ]
    out, refs = extract_media(messages)
    assert [(r.kind, r.url, r.part) for r in refs] == [
        ("image", "data:a", "messages[1].content[0]"),
        ("video", "v1", "messages[1].content[2]"),
        ("video", "v2", "messages[3].content[0]"),
        ("image", "data:b", "messages[3].content[1]")]
    assert out[0] is messages[0] and out[2] is messages[2]
    assert out[1]["content"] == [{"type": "image"}, {"type": "text", "text": "and"},
                                 {"type": "video"}]


def test_text_only_messages_untouched():
    messages = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    out, refs = extract_media(messages)
    assert refs == [] and out[0] is messages[0]


@pytest.mark.parametrize("bad, words", [
    ([{"role": "system", "content": [_img("x")]}], "only accepted in user messages"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}], "needs a URL"),
    ([{"role": "user", "content": [{"type": "image", "image": "x"}]}], "image_url"),
])
def test_bad_media_parts(bad, words):
    with pytest.raises(InvalidRequest, match=words):
        extract_media(bad)


def test_placeholders_survive_normalization_and_merging():
    out, _ = extract_media([
        {"role": "user", "content": "first"},
        {"role": "user", "content": [_img("x"), {"type": "text", "text": "second"}]},
    ])
    merged = normalize_messages(out)
    assert merged == [{"role": "user", "content": [
        {"type": "text", "text": "first"}, {"type": "image"},
        {"type": "text", "text": "second"}]}]


def test_frames_as_images_for_models_without_native_video():
    frames = [np.full((4, 4, 3), i, np.uint8) for i in range(3)]
    clip = DecodedVideo(frames, [0.0, 0.5, 1.0], 10.0, 1.5, 2.0)
    messages, _ = extract_media([{"role": "user", "content": [
        _img("a"), {"type": "video_url", "video_url": {"url": "v"}},
        {"type": "text", "text": "t"}]}])
    native = arrange_for_model(messages, ["IMG", clip], native_video=True)
    assert native == (messages, ["IMG"], [clip])
    out, images, videos = arrange_for_model(messages, ["IMG", clip], native_video=False)
    assert videos == [] and images[0] == "IMG" and len(images) == 4
    assert images[1] is frames[0]
    assert out[0]["content"] == [{"type": "image"}] * 4 + [{"type": "text", "text": "t"}]


def test_request_limits():
    refs = extract_media([{"role": "user", "content": [_img("a")] * 3}])[1]
    check_media_limits(refs, MediaConfig(max_images_per_request=3))
    with pytest.raises(InvalidRequest, match="3 images; at most 2"):
        check_media_limits(refs, MediaConfig(max_images_per_request=2))
